package webhook_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/soci-indexer/soci-indexer/pkg/queue"
	"github.com/soci-indexer/soci-indexer/pkg/webhook"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their paths and a pool trusting the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "webhook test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pool
}

// serverOptions serves every endpoint with the test's token and the
// queue's streams.
func serverOptions(natsURL string, qc queue.Config) webhook.ServerOptions {
	src := webhook.SourceConfig{Token: token}
	return webhook.ServerOptions{
		NATSURL: natsURL,
		Queue:   queue.Config{Stream: qc.Stream, SubjectPrefix: qc.SubjectPrefix, DLQStream: qc.DLQStream, DLQPrefix: qc.DLQPrefix},
		Handler: webhook.Config{Distribution: src, Harbor: src, CloudEvents: src, ECR: src},
	}
}

func TestServeTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	qc := queueConfig()
	settings := serverOptions(machineNATS(), qc)
	settings.TLSCert, settings.TLSKey = certFile, keyFile
	js := connect(t, machineNATS())
	t.Cleanup(func() {
		_ = js.DeleteStream(context.Background(), qc.Stream)
		_ = js.DeleteStream(context.Background(), qc.DLQStream)
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- webhook.Serve(ctx, settings, ln, slog.New(slog.DiscardHandler)) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	url := "https://" + ln.Addr().String()
	eventually(t, 10*time.Second, "HTTPS readiness", func() bool {
		resp, err := client.Get(url + webhook.PathReadyz)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	req, err := http.NewRequest(http.MethodPost, url+webhook.PathDistribution, bytes.NewReader(readTestdata(t, "distribution-push.json")))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", webhook.MediaTypeDistributionEventsV2)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST over HTTPS: %d, want 202", resp.StatusCode)
	}
	if jobs := storedJobs(t, js, qc.Stream); len(jobs) != 1 {
		t.Fatalf("%d jobs, want 1", len(jobs))
	}
	// Plain HTTP to the TLS listener is refused.
	if resp, err := http.Get("http://" + ln.Addr().String() + webhook.PathHealthz); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP answered 200 on the TLS listener")
		}
	}
}

func TestServeRefusesHalfTLS(t *testing.T) {
	settings := serverOptions(machineNATS(), queueConfig())
	settings.TLSCert = "/nonexistent/tls.crt"
	if err := webhook.Serve(context.Background(), settings, nil, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("Serve with a certificate and no key succeeded")
	}
}
