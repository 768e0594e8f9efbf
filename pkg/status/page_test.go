package status

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/soci-indexer/soci-indexer/pkg/db"
)

func TestPage(t *testing.T) { backends(t, testPage) }

func testPage(t *testing.T, st db.Store) {
	ctx := context.Background()
	bad := db.JobKey{Registry: "reg", Repository: "app", Digest: dgstB, Tag: "broken"}
	if _, err := st.UpsertQueued(ctx, bad, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Start(ctx, bad, "w1"); err != nil {
		t.Fatal(err)
	}
	if err := st.Fail(ctx, bad, errors.New("gzip: truncated layer"), true); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewHandler(New(st, nil), "secret", nil))
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL + "/status/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: %s", resp.Status)
	}
	// Login with the wrong token sets no cookie.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = client.PostForm(srv.URL+"/status/login", url.Values{"token": {"wrong"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Errorf("wrong login: %s %v", resp.Status, resp.Cookies())
	}
	resp, err = client.PostForm(srv.URL+"/status/login", url.Values{"token": {"secret"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 || resp.Cookies()[0].SameSite != http.SameSiteStrictMode || !resp.Cookies()[0].HttpOnly {
		t.Fatalf("login: %s %v", resp.Status, resp.Cookies())
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/status/", nil)
	req.AddCookie(resp.Cookies()[0])
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = io.Copy(&b, resp.Body)
	body := b.String()
	for _, want := range []string{"<svg", `fill="#36c"><title>`, "1 failed", "gzip: truncated layer", "reg/app:broken@" + dgstB, `<td>app</td><td>1</td><td>0</td><td>0</td><td>1</td>`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
}
