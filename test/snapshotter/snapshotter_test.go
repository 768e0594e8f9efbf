package snapshotter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/soci-indexer/soci-indexer/pkg/ztoc"
)

const (
	artifactTypeV1  = "application/vnd.amazon.soci.index.v1+json"
	artifactTypeV2  = "application/vnd.amazon.soci.index.v2+json"
	annIndexDigest  = "com.amazon.soci.index-digest"
	annLayerDigest  = "com.amazon.soci.image-layer-digest"
	defaultSpanSize = 4 << 20
)

var (
	amd64 = ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = ocispec.Platform{OS: "linux", Architecture: "arm64"}
)

type testCase struct {
	name      string
	serve     []string // extra `indexer serve` flags
	v1        bool     // the service builds v1 indexes (referrers), pulled by the image's own tag
	spanSize  int64
	plain     bool // uncompressed layers
	platforms []ocispec.Platform
}

// TestSnapshotter pushes images to the all-in-one service, pulls them with
// ctr through soci-snapshotter-grpc, and checks that soci lazily mounted
// every layer our index has a zTOC for, from our index, and that the files
// equal the originals.
func TestSnapshotter(t *testing.T) {
	tl := needTools(t)
	w := startWorld(t, tl)
	cases := []testCase{
		{name: "v2-default"},
		{name: "v1", serve: []string{"--index-version", "v1"}, v1: true},
		{name: "span-1mib", serve: []string{"--span-size", "1048576"}, spanSize: 1 << 20},
		{name: "uncompressed", plain: true},
		{name: "multi-platform", platforms: []ocispec.Platform{amd64, arm64}},
	}
	if only := os.Getenv("SNAPSHOTTER_CASES"); only != "" {
		cases = slices.DeleteFunc(cases, func(c testCase) bool { return !slices.Contains(strings.Split(only, ","), c.name) })
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runCase(t, w, tc, uint64(i)) })
	}
}

// expected is what the service pushed for one platform's image.
type expected struct {
	img        *image
	pullRef    string                        // what ctr pulls
	indexDgst  string                        // the SOCI index soci must use
	ztocs      map[string]ocispec.Descriptor // image layer digest -> zTOC
	manifestID string                        // manifest digest soci sees (the rewritten one for v2)
}

func runCase(t *testing.T, w *world, tc testCase, seed uint64) {
	if tc.spanSize == 0 {
		tc.spanSize = defaultSpanSize
	}
	if len(tc.platforms) == 0 {
		tc.platforms = []ocispec.Platform{amd64}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	svc := startService(t, w, tc.name, tc.serve...)
	w.proxy.setBackend(svc.registry)

	repoName := "st/" + tc.name
	repo, err := remote.NewRepository(svc.registry + "/" + repoName)
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true

	// Each image: a zTOC layer, a layer too small for one, another zTOC layer.
	rng := rand.New(rand.NewPCG(seed, 42))
	var imgs []*image
	for _, p := range tc.platforms {
		prefix := tc.name + "-" + p.Architecture
		imgs = append(imgs, &image{platform: p, layers: []layer{
			bigLayer(rng, prefix+"-a", !tc.plain),
			smallLayer(prefix + "-small"),
			bigLayer(rng, prefix+"-b", !tc.plain),
		}})
	}
	const tag = "v1"
	if len(imgs) == 1 {
		if err := pushImage(ctx, repo, imgs[0], tag); err != nil {
			t.Fatal(err)
		}
	} else {
		for _, img := range imgs {
			if err := pushImage(ctx, repo, img, ""); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := pushIndex(ctx, repo, tag, imgs); err != nil {
			t.Fatal(err)
		}
	}

	exps := waitForIndexes(ctx, t, svc, repo, tc, tag, imgs)
	for _, e := range exps {
		// The zTOCs are the ones of the big layers, built at the case's span size.
		for _, l := range e.img.layers {
			zd, ok := e.ztocs[l.desc.Digest.String()]
			big := !strings.HasSuffix(l.root, "-small")
			if ok != big {
				t.Fatalf("%s: layer %s has a zTOC: %v, want %v", e.img.platform.Architecture, l.root, ok, big)
			}
			if ok {
				checkSpans(ctx, t, repo, zd, l, tc.spanSize)
			}
		}
		pullAndCheck(ctx, t, w, repoName, e)
	}
}

// waitForIndexes waits until the service has pushed the SOCI index of every
// image and returns what soci should find.
func waitForIndexes(ctx context.Context, t *testing.T, svc *service, repo *remote.Repository, tc testCase, tag string, imgs []*image) []*expected {
	t.Helper()
	var exps []*expected
	err := waitFor("SOCI index pushed by the service", 3*time.Minute, svc.proc, func() bool {
		exps = exps[:0]
		for _, img := range imgs {
			e, err := findIndex(ctx, repo, tc, tag, img)
			if err != nil {
				return false
			}
			exps = append(exps, e)
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return exps
}

func fetchJSON(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor, v any) error {
	b, err := content.FetchAll(ctx, repo, desc)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func findIndex(ctx context.Context, repo *remote.Repository, tc testCase, tag string, img *image) (*expected, error) {
	e := &expected{img: img, ztocs: map[string]ocispec.Descriptor{}}
	var idxDesc ocispec.Descriptor
	if tc.v1 {
		var found []ocispec.Descriptor
		if err := repo.Referrers(ctx, img.manifest, artifactTypeV1, func(r []ocispec.Descriptor) error {
			found = append(found, r...)
			return nil
		}); err != nil {
			return nil, err
		}
		if len(found) != 1 {
			return nil, fmt.Errorf("%d v1 SOCI indexes: %w", len(found), errNotYet)
		}
		idxDesc = found[0]
		e.pullRef, e.manifestID = tag, img.manifest.Digest.String()
	} else {
		// v2: {tag}-soci is an image index of rewritten manifests, each
		// annotated with its SOCI index.
		sociTag := tag + "-soci"
		desc, err := repo.Resolve(ctx, sociTag)
		if err != nil {
			return nil, err
		}
		var idx ocispec.Index
		if err := fetchJSON(ctx, repo, desc, &idx); err != nil {
			return nil, err
		}
		var mDesc *ocispec.Descriptor
		for i, m := range idx.Manifests {
			if m.ArtifactType == "" && (len(tc.platforms) == 1 || (m.Platform != nil && m.Platform.Architecture == img.platform.Architecture)) {
				if mDesc != nil {
					return nil, fmt.Errorf("%s lists two manifests for %s", sociTag, img.platform.Architecture)
				}
				mDesc = &idx.Manifests[i]
			}
		}
		if mDesc == nil {
			return nil, fmt.Errorf("%s has no manifest for %s", sociTag, img.platform.Architecture)
		}
		var m ocispec.Manifest
		if err := fetchJSON(ctx, repo, *mDesc, &m); err != nil {
			return nil, err
		}
		d := m.Annotations[annIndexDigest]
		if d == "" {
			return nil, fmt.Errorf("manifest %s in %s has no %s", mDesc.Digest, sociTag, annIndexDigest)
		}
		if idxDesc, err = repo.Resolve(ctx, d); err != nil {
			return nil, err
		}
		e.pullRef, e.manifestID = sociTag, mDesc.Digest.String()
	}
	var sociIdx ocispec.Manifest
	if err := fetchJSON(ctx, repo, idxDesc, &sociIdx); err != nil {
		return nil, err
	}
	e.indexDgst = idxDesc.Digest.String()
	for _, l := range sociIdx.Layers {
		if d := l.Annotations[annLayerDigest]; d != "" {
			e.ztocs[d] = l
		}
	}
	return e, nil
}

// checkSpans reads the zTOC and checks it was built at spanSize: its spans
// are at least spanSize apart (at most ceil(size/span) of them) and not much
// more (a span ends at the first deflate block boundary past spanSize).
func checkSpans(ctx context.Context, t *testing.T, repo *remote.Repository, zd ocispec.Descriptor, l layer, spanSize int64) {
	t.Helper()
	b, err := content.FetchAll(ctx, repo, zd)
	if err != nil {
		t.Fatal(err)
	}
	z, err := ztoc.Unmarshal(b)
	if err != nil {
		t.Fatalf("zTOC of %s: %v", l.root, err)
	}
	var size int64
	for _, e := range l.entries {
		size += int64(len(e.data))
	}
	spans := int64(z.MaxSpanID) + 1
	hi, lo := (size+spanSize-1)/spanSize+1, size/(spanSize+spanSize/4)
	if spans > hi || spans < max(lo, 1) {
		t.Errorf("zTOC of %s (%d file bytes): %d spans, want %d..%d for span size %d", l.root, size, spans, lo, hi, spanSize)
	}
	t.Logf("zTOC of %s: %d spans, %d bytes", l.root, spans, len(b))
}

var rxCache = map[string]*regexp.Regexp{}

func mustRegexp(p string) *regexp.Regexp {
	if rx, ok := rxCache[p]; ok {
		return rx
	}
	rx := regexp.MustCompile(p)
	rxCache[p] = rx
	return rx
}

// pullAndCheck pulls one platform's image through soci and checks the mounts,
// soci's log, the proxy's log and the files.
func pullAndCheck(ctx context.Context, t *testing.T, w *world, repoName string, e *expected) {
	t.Helper()
	arch := e.img.platform.Architecture
	before := w.fuseMounts()
	logFrom := w.sociLogSize()
	ref := w.proxy.addr + "/" + repoName + ":" + e.pullRef
	out, err := w.ctrCmd(t, 3*time.Minute, "image", "pull", "--snapshotter", "soci", "--plain-http",
		"--platform", "linux/"+arch, ref)
	if err != nil {
		t.Fatalf("ctr image pull %s: %v\n%s\nsoci log:\n%s", ref, err, out, w.soci.tail())
	}

	// soci's log: it fetched our index, and prepared one remote snapshot per zTOC.
	var usedIndex, remote int
	for _, le := range w.sociLog(logFrom) {
		if le.str("msg") == "fetching SOCI artifacts using index descriptor" {
			if le.str("digest") != e.indexDgst {
				t.Errorf("%s: soci fetched SOCI index %s, the service pushed %s", arch, le.str("digest"), e.indexDgst)
			}
			usedIndex++
		}
		if le.str("remote-snapshot-prepared") == "true" {
			remote++
		}
	}
	if usedIndex == 0 {
		t.Errorf("%s: soci's log does not say it fetched SOCI index %s", arch, e.indexDgst)
	}
	if remote != len(e.ztocs) {
		t.Errorf("%s: soci prepared %d remote snapshots, want one per zTOC (%d)", arch, remote, len(e.ztocs))
	}

	// One FUSE mount per zTOC, each showing one of the zTOC layers.
	var mounts []string
	for _, m := range w.fuseMounts() {
		if !slices.Contains(before, m) {
			mounts = append(mounts, m)
		}
	}
	if len(mounts) != len(e.ztocs) {
		t.Fatalf("%s: %d new FUSE mounts %v, want one per zTOC (%d)\nsoci log:\n%s", arch, len(mounts), mounts, len(e.ztocs), w.soci.tail())
	}
	byLayer := map[string]string{} // layer root -> mount
	for _, m := range mounts {
		ents, err := os.ReadDir(m)
		if err != nil || len(ents) != 1 {
			t.Fatalf("%s: FUSE mount %s: %v entries, %v", arch, m, len(ents), err)
		}
		byLayer[ents[0].Name()] = m
	}

	// The proxy saw every pull: containerd fetched the small layer whole,
	// soci fetched our zTOCs, and no zTOC layer was fetched whole.
	for _, l := range e.img.layers {
		reqs := w.proxy.blobRequests(l.desc.Digest.String())
		zd, lazy := e.ztocs[l.desc.Digest.String()]
		if !lazy {
			if !fetchedWhole(reqs, l.desc.Size) {
				t.Errorf("%s: layer %s (no zTOC) was not fetched whole through the proxy: %+v", arch, l.root, reqs)
			}
			continue
		}
		if len(w.proxy.blobRequests(zd.Digest.String())) == 0 {
			t.Errorf("%s: soci never fetched the zTOC %s of %s through the proxy", arch, zd.Digest, l.root)
		}
		checkRanged(t, arch, l, reqs)
		if byLayer[l.root] == "" {
			t.Fatalf("%s: no FUSE mount shows layer %s (mounts: %v)", arch, l.root, byLayer)
		}
	}

	// Reading one small file fetches part of its layer, by range.
	for _, l := range e.img.layers {
		m, ok := byLayer[l.root]
		if !ok {
			continue
		}
		beforeBytes := rangedBytes(w.proxy.blobRequests(l.desc.Digest.String()))
		got, err := os.ReadFile(filepath.Join(m, l.root, "small.txt"))
		if err != nil || !bytes.Equal(got, []byte("hello from "+l.root+"\n")) {
			t.Errorf("%s: %s/small.txt through FUSE: %q, %v", arch, l.root, got, err)
		}
		// The proxy logs a request once its handler returns, which can be
		// just after soci has the bytes and answered the read: wait for the
		// log to show the request (or for 10 s) before judging.
		after := beforeBytes
		for wait := time.Now().Add(10 * time.Second); after <= beforeBytes && time.Now().Before(wait); time.Sleep(10 * time.Millisecond) {
			after = rangedBytes(w.proxy.blobRequests(l.desc.Digest.String()))
		}
		if after <= beforeBytes || after >= l.desc.Size {
			t.Errorf("%s: reading %s/small.txt fetched %d..%d bytes of the %d-byte layer; want some, fewer than all", arch, l.root, beforeBytes, after, l.desc.Size)
		}
		t.Logf("%s: layer %s (%d bytes): %d bytes fetched after the pull, %d after reading small.txt", arch, l.root, l.desc.Size, beforeBytes, after)
	}

	// Every file through the lazy mount equals the original, nothing more.
	for _, l := range e.img.layers {
		if m, ok := byLayer[l.root]; ok {
			compareTree(t, m, l)
			checkRanged(t, arch, l, w.proxy.blobRequests(l.desc.Digest.String()))
		}
	}
}

func fetchedWhole(reqs []request, size int64) bool {
	for _, r := range reqs {
		if r.method == "GET" && r.status == 200 && r.bytes == size {
			return true
		}
	}
	return false
}

func checkRanged(t *testing.T, arch string, l layer, reqs []request) {
	t.Helper()
	for _, r := range reqs {
		if r.method == "GET" && (r.rangeHeader == "" || r.status == 200 || r.bytes >= l.desc.Size) {
			t.Errorf("%s: zTOC layer %s was fetched whole: %+v", arch, l.root, r)
		}
	}
}

func rangedBytes(reqs []request) int64 {
	var n int64
	for _, r := range reqs {
		if r.method == "GET" {
			n += r.bytes
		}
	}
	return n
}

// compareTree checks that mount shows exactly the entries of l with their
// contents, modes and link targets.
func compareTree(t *testing.T, mount string, l layer) {
	t.Helper()
	want := map[string]entry{}
	for _, e := range l.entries {
		want[strings.TrimSuffix(e.name, "/")] = e
	}
	seen := 0
	err := filepath.WalkDir(mount, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(mount, path)
		if rel == "." {
			return nil
		}
		e, ok := want[rel]
		if !ok {
			t.Errorf("%s: unexpected entry %s in the lazy mount", l.root, rel)
			return nil
		}
		seen++
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		switch {
		case e.dir:
			if !fi.IsDir() || int64(fi.Mode().Perm()) != e.mode {
				t.Errorf("%s: %s: mode %v, want directory %o", l.root, rel, fi.Mode(), e.mode)
			}
		case e.link != "":
			target, err := os.Readlink(path)
			if err != nil || target != e.link {
				t.Errorf("%s: %s: link %q (%v), want %q", l.root, rel, target, err, e.link)
			}
		default:
			got, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("%s: read %s through FUSE: %v", l.root, rel, err)
			} else if !bytes.Equal(got, e.data) {
				t.Errorf("%s: %s: %d bytes through FUSE differ from the original %d bytes", l.root, rel, len(got), len(e.data))
			}
			if !fi.Mode().IsRegular() || int64(fi.Mode().Perm()) != e.mode {
				t.Errorf("%s: %s: mode %v, want regular %o", l.root, rel, fi.Mode(), e.mode)
			}
		}
		return nil
	})
	if err != nil {
		t.Errorf("%s: walk the lazy mount: %v", l.root, err)
	}
	if seen != len(want) {
		t.Errorf("%s: %d of %d entries in the lazy mount", l.root, seen, len(want))
	}
}
