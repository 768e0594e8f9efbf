package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/soci-indexer/soci-indexer/internal/embedded/registry"
	"github.com/soci-indexer/soci-indexer/internal/registryclient"
	"github.com/soci-indexer/soci-indexer/pkg/index"
)

// pushIndexTestImage pushes a one-layer image tagged v1 and returns its
// manifest digest.
func pushIndexTestImage(t *testing.T, reg *registry.Registry, name string) digest.Digest {
	t.Helper()
	ctx := context.Background()
	c, err := registryclient.New(registryclient.Options{PlainHTTP: true, NoDockerConfig: true})
	if err != nil {
		t.Fatal(err)
	}
	repo, err := c.Repository(reg.Addr() + "/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	data := bytes.Repeat([]byte("soci-indexer "), 5000)
	_ = tw.WriteHeader(&tar.Header{Name: "etc/greeting", Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
	_, _ = tw.Write(data)
	_ = tw.Close()
	var layer bytes.Buffer
	zw := gzip.NewWriter(&layer)
	_, _ = zw.Write(tarBuf.Bytes())
	_ = zw.Close()

	push := func(mt string, b []byte) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))}
		if err := repo.Push(ctx, d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	layerDesc := push(ocispec.MediaTypeImageLayerGzip, layer.Bytes())
	config, _ := json.Marshal(ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}})
	manifest, _ := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    push(ocispec.MediaTypeImageConfig, config),
		Layers:    []ocispec.Descriptor{layerDesc},
	})
	mDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(manifest), Size: int64(len(manifest))}
	if err := repo.PushReference(ctx, mDesc, bytes.NewReader(manifest), "v1"); err != nil {
		t.Fatal(err)
	}
	return mDesc.Digest
}

func runIndexCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestIndexCommand(t *testing.T) {
	reg, err := registry.Start(context.Background(), registry.Options{DisableDeletes: true})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	manifest := pushIndexTestImage(t, reg, "cli/app")
	ref := reg.Addr() + "/cli/app:v1"

	out, err := runIndexCmd(t, "index", ref, "--plain-http", "--min-layer-size", "0", "--index-version", "both", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var built []builtIndex
	if err := json.Unmarshal([]byte(out), &built); err != nil {
		t.Fatalf("--json output %q: %v", out, err)
	}
	if len(built) != 2 || built[0].Version != "v1" || built[1].Version != "v2" || built[1].Tag != "v1-soci" ||
		built[0].Manifest != manifest.String() || built[0].Layers[0].State != string(index.LayerBuilt) {
		t.Fatalf("built %+v", built)
	}

	// The default is v2, printed as a table.
	out, err = runIndexCmd(t, "index", ref, "--plain-http", "--min-layer-size", "0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "VERSION") || !strings.Contains(out, "v2") || !strings.Contains(out, built[1].Digest) ||
		strings.Contains(out, built[0].Digest) {
		t.Fatalf("table:\n%s", out)
	}

	out, err = runIndexCmd(t, "index", "ls", ref, "--plain-http", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var listed []indexListing
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 2 || listed[0].Digest != built[0].Digest || listed[1].Digest != built[1].Digest || listed[1].Version != "v2" {
		t.Fatalf("ls: %+v", listed)
	}

	// With a database, the same layer in another repository is reused.
	dsn := "sqlite://" + filepath.Join(t.TempDir(), "indexer.db")
	if _, err := runIndexCmd(t, "index", ref, "--plain-http", "--min-layer-size", "0", "--database-url", dsn); err != nil {
		t.Fatal(err)
	}
	pushIndexTestImage(t, reg, "cli/other")
	out, err = runIndexCmd(t, "index", reg.Addr()+"/cli/other:v1", "--plain-http", "--min-layer-size", "0", "--database-url", dsn, "--json")
	if err != nil {
		t.Fatal(err)
	}
	built = nil
	if err := json.Unmarshal([]byte(out), &built); err != nil || len(built) != 1 || built[0].Layers[0].State != string(index.LayerReused) {
		t.Fatalf("second repository with --database-url: %s (%v)", out, err)
	}

	if _, err := runIndexCmd(t, "index", ref, "--plain-http", "--index-version", "v3"); err == nil {
		t.Fatal("--index-version v3 accepted")
	}
	if _, err := runIndexCmd(t, "index", reg.Addr()+"/cli/app", "--plain-http"); err == nil {
		t.Fatal("reference without tag or digest accepted")
	}
}

// TestIndexLsListsEveryPlatform: the two platforms of an image share their
// one layer, so their SOCI indexes are byte-identical; ls still lists a
// row per platform.
func TestIndexLsListsEveryPlatform(t *testing.T) {
	reg, err := registry.Start(context.Background(), registry.Options{DisableDeletes: true})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	ctx := context.Background()
	c, err := registryclient.New(registryclient.Options{PlainHTTP: true, NoDockerConfig: true})
	if err != nil {
		t.Fatal(err)
	}
	repo, err := c.Repository(reg.Addr() + "/cli/multi")
	if err != nil {
		t.Fatal(err)
	}
	push := func(mt string, b []byte) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))}
		if err := repo.Push(ctx, d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	data := bytes.Repeat([]byte("shared layer "), 5000)
	_ = tw.WriteHeader(&tar.Header{Name: "etc/shared", Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
	_, _ = tw.Write(data)
	_ = tw.Close()
	var layer bytes.Buffer
	zw := gzip.NewWriter(&layer)
	_, _ = zw.Write(tarBuf.Bytes())
	_ = zw.Close()
	layerDesc := push(ocispec.MediaTypeImageLayerGzip, layer.Bytes())
	var manifests []ocispec.Descriptor
	for _, arch := range []string{"amd64", "arm64"} {
		platform := ocispec.Platform{OS: "linux", Architecture: arch}
		config, _ := json.Marshal(ocispec.Image{Platform: platform})
		m, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
			Config: push(ocispec.MediaTypeImageConfig, config), Layers: []ocispec.Descriptor{layerDesc}})
		d := push(ocispec.MediaTypeImageManifest, m)
		d.Platform = &platform
		manifests = append(manifests, d)
	}
	idx, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: manifests})
	idxDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(idx), Size: int64(len(idx))}
	if err := repo.PushReference(ctx, idxDesc, bytes.NewReader(idx), "v1"); err != nil {
		t.Fatal(err)
	}
	ref := reg.Addr() + "/cli/multi:v1"
	if _, err := runIndexCmd(t, "index", ref, "--plain-http", "--min-layer-size", "0"); err != nil {
		t.Fatal(err)
	}
	out, err := runIndexCmd(t, "index", "ls", ref, "--plain-http", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var listed []indexListing
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatal(err)
	}
	platforms := map[string]string{}
	for _, l := range listed {
		platforms[l.Platform] = l.Digest
	}
	if len(listed) != 2 || platforms["linux/amd64"] == "" || platforms["linux/amd64"] != platforms["linux/arm64"] {
		t.Fatalf("ls: %+v, want one row per platform with the same (byte-identical) SOCI index", listed)
	}
}

// A --platform that matches nothing in the image is an error, on a
// single-platform image too, rather than nothing built and exit 0.
func TestIndexPlatformMatchingNothing(t *testing.T) {
	reg, err := registry.Start(context.Background(), registry.Options{DisableDeletes: true})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	pushIndexTestImage(t, reg, "cli/single")
	ref := reg.Addr() + "/cli/single:v1"
	for _, p := range []string{"foo", "plan9/mips"} {
		out, err := runIndexCmd(t, "index", ref, "--plain-http", "--min-layer-size", "0", "--platform", p)
		if err == nil {
			t.Errorf("index --platform %s: no error\n%s", p, out)
		} else {
			t.Logf("index --platform %s: %v", p, err)
		}
	}
}

// A refused password names the registry and the user, given through
// serve's --registry-auth.
func TestIndexWrongPasswordNamesRegistryAndUser(t *testing.T) {
	reg, err := registry.Start(context.Background(), registry.Options{Htpasswd: map[string]string{"alice": "s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	_, err = runIndexCmd(t, "index", reg.Addr()+"/cli/app:v1", "--plain-http",
		"--registry-auth", reg.Addr()+"=alice:wrong")
	if err == nil || !strings.Contains(err.Error(), reg.Addr()) || !strings.Contains(err.Error(), `"alice"`) {
		t.Errorf("wrong password: %v, want an error naming %s and alice", err, reg.Addr())
	}
}
