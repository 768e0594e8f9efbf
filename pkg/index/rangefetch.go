package index

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// Defaults of WithRangeFetch.
const (
	DefaultRangeFetchMin   = 64 << 20 // layers smaller than this use one GET
	DefaultRangeFetchPart  = 8 << 20
	DefaultRangeFetchConns = 4
)

// rangeFetch configures parallel Range GETs of one layer blob.
type rangeFetch struct {
	min, part int64
	conns     int
}

// WithRangeFetch downloads layers of at least minSize bytes with conns HTTP
// Range GETs at a time, of part bytes each, from registries that answer
// Range requests; the parts are handed to the zTOC build in order, so the
// layer is still hashed and verified as one stream, and at most conns
// parts are held in memory. conns 1 (or a repository that is not a
// *remote.Repository) means one ordinary GET. Default: 64 MiB, 8 MiB, 4.
func WithRangeFetch(minSize, part int64, conns int) BuildOption {
	return func(c *buildConfig) error {
		if minSize < 0 || part < 1 || conns < 1 {
			return fmt.Errorf("range fetch %d/%d/%d: sizes and connections must be positive", minSize, part, conns)
		}
		c.rangeFetch = rangeFetch{min: minSize, part: part, conns: conns}
		return nil
	}
}

// fetchLayer opens the layer blob: parallel Range GETs when they apply,
// else one GET.
func (b *IndexBuilder) fetchLayer(ctx context.Context, layer ocispec.Descriptor) (io.ReadCloser, error) {
	rf := b.cfg.rangeFetch
	repo, ok := b.repo.(*remote.Repository)
	if !ok || rf.conns < 2 || layer.Size < rf.min || layer.Size <= rf.part {
		return b.repo.Fetch(ctx, layer)
	}
	r := &rangeReader{ctx: ctx, repo: repo, layer: layer, part: rf.part, conns: rf.conns}
	// The first part tells whether the registry answers Range; if it
	// sends the whole blob instead, that answer is the one GET.
	first, whole, err := r.get(ctx, 0)
	if err != nil {
		return nil, err
	}
	if whole != nil {
		b.cfg.logger.Info("registry does not answer Range requests; one GET", "layer", layer.Digest)
		return whole, nil
	}
	r.ctx, r.cancel = context.WithCancel(ctx)
	done := make(chan partResult, 1)
	done <- partResult{data: first}
	r.pending = append(r.pending, done)
	r.next = 1
	r.start()
	return r, nil
}

type partResult struct {
	data []byte
	err  error
}

// rangeReader reads a blob as consecutive parts fetched conns at a time.
type rangeReader struct {
	ctx    context.Context
	cancel context.CancelFunc
	repo   *remote.Repository
	layer  ocispec.Descriptor
	part   int64
	conns  int

	next    int64             // index of the next part to request
	pending []chan partResult // requested parts, in order
	cur     []byte            // unread bytes of the current part
}

func (r *rangeReader) parts() int64 { return (r.layer.Size + r.part - 1) / r.part }

// start requests parts until conns are in flight.
func (r *rangeReader) start() {
	for len(r.pending) < r.conns && r.next < r.parts() {
		i := r.next
		r.next++
		ch := make(chan partResult, 1)
		r.pending = append(r.pending, ch)
		go func() {
			data, whole, err := r.get(r.ctx, i)
			if whole != nil {
				whole.Close()
				err = fmt.Errorf("fetch layer part %d: the registry stopped answering Range", i)
			}
			ch <- partResult{data, err}
		}()
	}
}

// get fetches part i with a Range GET. A registry that answers with the
// whole blob (200) gets its body returned as whole, for the caller to read
// or close.
func (r *rangeReader) get(ctx context.Context, i int64) (data []byte, whole io.ReadCloser, err error) {
	from := i * r.part
	to := min(from+r.part, r.layer.Size) // exclusive
	ref := r.repo.Reference
	ref.Reference = r.layer.Digest.String()
	ctx = auth.AppendRepositoryScope(ctx, ref, auth.ActionPull)
	scheme := "https"
	if r.repo.PlainHTTP {
		scheme = "http"
	}
	url := fmt.Sprintf("%s://%s/v2/%s/blobs/%s", scheme, ref.Host(), ref.Repository, ref.Reference)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", from, to-1))
	client := r.repo.Client
	if client == nil {
		client = auth.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch layer part %d: %w", i, err)
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
	case http.StatusOK:
		if resp.ContentLength != -1 && resp.ContentLength != r.layer.Size {
			resp.Body.Close()
			return nil, nil, fmt.Errorf("fetch layer: Content-Length %d, descriptor size %d", resp.ContentLength, r.layer.Size)
		}
		return nil, resp.Body, nil
	default:
		resp.Body.Close()
		return nil, nil, fmt.Errorf("fetch layer part %d: %s %s: %s", i, req.Method, url, resp.Status)
	}
	defer resp.Body.Close()
	if cr := resp.Header.Get("Content-Range"); !strings.HasPrefix(cr, "bytes "+strconv.FormatInt(from, 10)+"-") {
		return nil, nil, fmt.Errorf("fetch layer part %d: Content-Range %q for bytes %d-%d", i, cr, from, to-1)
	}
	data = make([]byte, to-from)
	if _, err := io.ReadFull(resp.Body, data); err != nil {
		return nil, nil, fmt.Errorf("fetch layer part %d: %w", i, err)
	}
	return data, nil, nil
}

func (r *rangeReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if len(r.pending) == 0 {
			return 0, io.EOF
		}
		var res partResult
		select {
		case res = <-r.pending[0]:
		case <-r.ctx.Done():
			return 0, context.Cause(r.ctx)
		}
		r.pending = r.pending[1:]
		if res.err != nil {
			return 0, res.err
		}
		r.cur = res.data
		r.start()
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// Close stops the requests in flight.
func (r *rangeReader) Close() error {
	r.cancel()
	return nil
}
