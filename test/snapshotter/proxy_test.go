package snapshotter_test

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
)

// request is one request the proxy forwarded to the registry.
type request struct {
	method, path, rangeHeader string
	status                    int
	bytes                     int64
}

// blobProxy is a reverse proxy in front of the registry under test: every
// pull (containerd's and soci's) goes through it, so the test sees which
// blobs were fetched, whole or by range, and how many bytes each sent. The
// registry behind it changes from case to case.
type blobProxy struct {
	addr    string
	backend atomic.Pointer[url.URL]
	srv     *http.Server

	mu   sync.Mutex
	reqs []request
}

func startProxy() (*blobProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &blobProxy{addr: ln.Addr().String()}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(p.backend.Load())
	}}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w}
		rp.ServeHTTP(cw, r)
		p.mu.Lock()
		p.reqs = append(p.reqs, request{method: r.Method, path: r.URL.Path, rangeHeader: r.Header.Get("Range"), status: cw.status, bytes: cw.n})
		p.mu.Unlock()
	})}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func (p *blobProxy) setBackend(hostPort string) {
	p.backend.Store(&url.URL{Scheme: "http", Host: hostPort})
}

// blobRequests returns the requests for the blob dgst so far.
func (p *blobProxy) blobRequests(dgst string) []request {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []request
	for _, r := range p.reqs {
		if strings.Contains(r.path, "/blobs/") && strings.HasSuffix(r.path, "/"+dgst) {
			out = append(out, r)
		}
	}
	return out
}

type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// Flush lets the reverse proxy stream.
func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
