package status

import (
	"crypto/subtle"
	"fmt"
	"html/template"
	"net/http"
	"time"

	"github.com/soci-indexer/soci-indexer/pkg/db"
)

// tokenCookie holds the status token in the browser after the login form:
// HttpOnly, SameSite=Strict, so other sites' pages cannot send it.
const tokenCookie = "soci_status_token"

// Point is one bar of the throughput chart.
type Point struct {
	X, Y, W, H int
	Label      string
}

type pageData struct {
	Repositories []Repository
	Failures     []db.FailureRow
	Queue        *Queue
	Chart        []Point
	ChartMax     int64
	Error        string
	CSRF         string
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>soci-indexer status</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}.failed{color:#b00}</style>
</head><body><h1>soci-indexer status</h1>
{{if .Error}}<p class="failed">{{.Error}}</p>{{end}}
<h2>Finished per minute (last hour)</h2>
<svg id="throughput" width="620" height="120" role="img" aria-label="attempts finished per minute">
<rect x="0" y="0" width="620" height="120" fill="#fafafa" stroke="#ccc"/>
{{range .Chart}}<rect x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}" fill="#36c"><title>{{.Label}}</title></rect>{{end}}
<text x="4" y="14" font-size="11">max {{.ChartMax}}</text></svg>
<h2>Queue</h2>
{{with .Queue}}<p id="queue">depth <b>{{.Messages}}</b> (pending {{.Pending}}, in progress {{.AckPending}}), dead letters <b>{{.DeadLetters}}</b></p>{{else}}<p>no queue</p>{{end}}
<h2>Coverage by repository</h2>
<table id="coverage"><tr><th>registry</th><th>repository</th><th>images</th><th>indexed</th><th>pending</th><th>failed</th><th>skipped</th></tr>
{{range .Repositories}}<tr><td>{{.Registry}}</td><td>{{.Repository}}</td><td>{{.Images}}</td><td>{{.Indexed}}</td><td>{{.Pending}}</td><td>{{.Failed}}</td><td>{{.Skipped}}</td></tr>{{end}}
</table>
<h2>Recent failures</h2>
<table id="failures"><tr><th>image</th><th>attempts</th><th>reason</th><th>finished</th><th></th></tr>
{{range .Failures}}<tr class="failed"><td>{{.Registry}}/{{.Repository}}:{{.Tag}}@{{.Digest}}</td><td>{{.Attempts}}</td><td>{{.LastError}}</td><td>{{.FinishedAt.UTC.Format "2006-01-02 15:04:05"}}</td><td><form method="post" action="/status/retry"><input type="hidden" name="csrf" value="{{$.CSRF}}"><input type="hidden" name="registry" value="{{.Registry}}"><input type="hidden" name="repository" value="{{.Repository}}"><input type="hidden" name="digest" value="{{.Digest}}"><input type="hidden" name="tag" value="{{.Tag}}"><button type="submit">Retry</button></form></td></tr>{{end}}
</table>
</body></html>
`))

var loginTmpl = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>soci-indexer status</title></head><body>
<h1>soci-indexer status</h1><form method="post" action="/status/login">
<label>Status token <input type="password" name="token" autocomplete="current-password"></label>
<button type="submit">Sign in</button></form></body></html>
`))

func (h *Handler) cookieAuthorized(r *http.Request) bool {
	c, err := r.Cookie(tokenCookie)
	return err == nil && h.token != "" && subtle.ConstantTimeCompare([]byte(c.Value), []byte(h.token)) == 1
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	tok := r.PostFormValue("token")
	if h.token == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(h.token)) != 1 {
		w.WriteHeader(http.StatusUnauthorized)
		_ = loginTmpl.Execute(w, nil)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: tok, Path: "/status/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/status/", http.StatusSeeOther)
}

func (h *Handler) page(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(r) && !h.cookieAuthorized(r) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		_ = loginTmpl.Execute(w, nil)
		return
	}
	ctx := r.Context()
	d := pageData{CSRF: h.csrf()}
	var errs []error
	var err error
	if d.Repositories, err = h.svc.Repositories(ctx, "", ""); err != nil {
		errs = append(errs, err)
	}
	if d.Failures, err = h.svc.store.Failures(ctx, 20); err != nil {
		errs = append(errs, err)
	}
	if d.Queue, err = h.svc.Queue(ctx); err != nil {
		errs = append(errs, err)
	}
	since := time.Now().Add(-time.Hour).Truncate(time.Minute)
	counts, err := h.svc.store.FinishedPerInterval(ctx, since, time.Minute)
	if err != nil {
		errs = append(errs, err)
	}
	d.Chart, d.ChartMax = chart(since, counts)
	if len(errs) > 0 {
		d.Error = fmt.Sprint(errs)
		h.log.Error("status page", "err", d.Error)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pageTmpl.Execute(w, d); err != nil {
		h.log.Error("status page", "err", err)
	}
}

// chart lays out one bar per minute from since (an hour ago) to now
// included: 61 bars, 100 high.
func chart(since time.Time, counts []db.IntervalCount) ([]Point, int64) {
	var top int64 = 1
	for _, c := range counts {
		top = max(top, c.Finished)
	}
	pts := make([]Point, 0, len(counts))
	for _, c := range counts {
		i := int(c.Start.Sub(since) / time.Minute)
		if i < 0 || i > 60 {
			continue
		}
		h := int(c.Finished * 100 / top)
		pts = append(pts, Point{X: 10 + i*10, Y: 110 - h, W: 8, H: h,
			Label: fmt.Sprintf("%s: %d finished (%d ok, %d skipped, %d failed)", c.Start.Format("15:04"), c.Finished, c.Succeeded, c.Skipped, c.Failed)})
	}
	return pts, top
}
