package app

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/soci-indexer/soci-indexer/internal/testsupport"
	"github.com/soci-indexer/soci-indexer/pkg/db"
)

// chromium returns Debian's Chromium, failing the test under CI when it is
// missing (scripts/ensure-services installs it) and skipping it elsewhere.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium not found on PATH (apt-get install chromium; scripts/ensure-services does)")
	}
	t.Skip("chromium not found on PATH")
	return ""
}

// newBrowser starts a headless Chromium of the test's own, with a fresh
// profile and without the background connections this closed network
// refuses.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(1200, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// tableRows returns the cells' text of each row of the table sel.
func tableRows(t *testing.T, ctx context.Context, sel string) [][]string {
	t.Helper()
	js := `Array.from(document.querySelectorAll(` + "'" + sel + ` tr')).map(r => Array.from(r.cells).map(c => c.innerText.trim()))`
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[][]string](js))
	if err != nil {
		t.Fatalf("rows of %s: %v", sel, err)
	}
	return rows
}

func findRow(rows [][]string, col int, want string) []string {
	for _, r := range rows {
		if len(r) > col && strings.Contains(r[col], want) {
			return r
		}
	}
	return nil
}

// TestStatusPageInBrowser drives the status page in headless Chromium
// against the all-in-one server: sign-in, an indexed image in the
// coverage table, a corrupt one among the failures with its reason, and
// the Retry button running that job again.
//
// SOCI_UPDATE_SCREENSHOTS=1 writes the page's screenshot to docs/img.
func TestStatusPageInBrowser(t *testing.T) {
	ctx := newBrowser(t)
	cfg := testsupport.Config(t)
	cfg.RegistryListen = "127.0.0.1:0"
	s := startServer(t, cfg)

	good := testsupport.PushImage(t, s.RegistryAddr(), "demo/app", "v1", testsupport.LayerSize, testsupport.LayerSize)
	bad := testsupport.PushTruncatedGzipImage(t, s.RegistryAddr(), "demo/broken", "v1")
	goodKey := db.JobKey{Registry: s.RegistryAddr(), Repository: "demo/app", Digest: good.Digest.String(), Tag: "v1"}
	badKey := db.JobKey{Registry: s.RegistryAddr(), Repository: "demo/broken", Digest: bad.Digest.String(), Tag: "v1"}
	testsupport.WaitJob(t, s.Store(), goodKey, 30*time.Second, db.JobSucceeded)
	failed := testsupport.WaitJob(t, s.Store(), badKey, 30*time.Second, db.JobFailed)

	page := "http://" + s.Addr() + "/status/"
	// A wrong token gets the form again, not the page.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(page),
		chromedp.WaitVisible(`input[name=token]`),
		chromedp.SendKeys(`input[name=token]`, "not-the-token"),
		chromedp.Submit(`input[name=token]`),
		chromedp.WaitVisible(`input[name=token]`),
	); err != nil {
		t.Fatal(err)
	}
	if n := len(tableRows(t, ctx, "#coverage")); n != 0 {
		t.Fatalf("wrong token shows the page (%d coverage rows)", n)
	}
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(`input[name=token]`, s.StatusToken()),
		chromedp.Submit(`input[name=token]`),
		chromedp.WaitVisible(`#coverage`),
	); err != nil {
		t.Fatal(err)
	}

	cov := tableRows(t, ctx, "#coverage")
	// registry, repository, images, indexed, pending, failed, skipped
	if r := findRow(cov, 1, "demo/app"); r == nil || r[2] != "1" || r[3] != "1" || r[5] != "0" {
		t.Errorf("coverage of demo/app: %v (table %v)", r, cov)
	}
	if r := findRow(cov, 1, "demo/broken"); r == nil || r[2] != "1" || r[3] != "0" || r[5] != "1" {
		t.Errorf("coverage of demo/broken: %v (table %v)", r, cov)
	}
	fails := tableRows(t, ctx, "#failures")
	// image, attempts, reason, finished
	row := findRow(fails, 0, "demo/broken")
	if row == nil || row[1] != "1" || !strings.Contains(row[2], "corrupt layer") {
		t.Fatalf("failures: %v, want demo/broken after 1 attempt with its reason", fails)
	}
	if findRow(fails, 0, "demo/app") != nil {
		t.Errorf("the indexed image is among the failures: %v", fails)
	}
	chart, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#throughput rect[fill="#36c"]').length`))
	if err != nil {
		t.Fatal(err)
	}
	if chart == 0 {
		t.Error("the throughput chart has no bar after two finished jobs")
	}

	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if img, err := png.Decode(bytes.NewReader(shot)); err != nil || img.Bounds().Dx() < 600 {
		t.Errorf("screenshot: %v", err)
	}
	if os.Getenv("SOCI_UPDATE_SCREENSHOTS") != "" {
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "img", "status-page.png"), shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Retry: the button posts the form; the worker runs the job again, and
	// the page shows the second attempt.
	before, err := s.Queue().Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(`#failures button`),
		chromedp.WaitVisible(`#coverage`),
	); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 30*time.Second, "the retried job to finish its second attempt", func() (bool, error) {
		j, err := s.Store().Get(context.Background(), badKey)
		if err != nil {
			return false, err
		}
		return j.Attempts == failed.Attempts+1 && j.Status == db.JobFailed, nil
	})
	after, err := s.Queue().Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if after.LastSeq != before.LastSeq+1 {
		t.Errorf("work stream last seq %d after Retry, want %d", after.LastSeq, before.LastSeq+1)
	}
	if err := chromedp.Do(ctx, chromedp.Reload(), chromedp.WaitVisible(`#failures`)); err != nil {
		t.Fatal(err)
	}
	if row := findRow(tableRows(t, ctx, "#failures"), 0, "demo/broken"); row == nil || row[1] != "2" {
		t.Errorf("after Retry the failure row is %v, want 2 attempts", row)
	}
}
