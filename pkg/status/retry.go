package status

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"

	"github.com/soci-indexer/soci-indexer/pkg/db"
	"github.com/soci-indexer/soci-indexer/pkg/queue"
)

// Retrier publishes a job again; *queue.Queue is one.
type Retrier interface {
	Retry(ctx context.Context, job queue.Job, nonce string) (queue.PublishAck, error)
}

// csrf is the value the page's forms carry: derived from the token, so a
// page of another site can neither read nor forge it.
func (h *Handler) csrf() string {
	m := hmac.New(sha256.New, []byte(h.token))
	m.Write([]byte("soci-indexer status retry"))
	return hex.EncodeToString(m.Sum(nil))
}

// retry queues a job again: POST /status/retry, authenticated by the
// cookie or header and by the form's csrf field.
func (h *Handler) retry(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(r) && !h.cookieAuthorized(r) {
		http.Error(w, "missing or wrong status token", http.StatusUnauthorized)
		return
	}
	if !hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(h.csrf())) {
		http.Error(w, "bad csrf token", http.StatusForbidden)
		return
	}
	rq, ok := h.svc.queue.(Retrier)
	if !ok || rq == nil {
		http.Error(w, "no queue to retry on", http.StatusServiceUnavailable)
		return
	}
	key := db.JobKey{Registry: r.PostFormValue("registry"), Repository: r.PostFormValue("repository"),
		Digest: r.PostFormValue("digest"), Tag: r.PostFormValue("tag")}
	if key.Registry == "" || key.Repository == "" || key.Digest == "" {
		http.Error(w, "registry, repository and digest are needed", http.StatusBadRequest)
		return
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	job := queue.Job{Action: queue.ActionPush, Source: "status-retry", Registry: key.Registry, Repository: key.Repository, Digest: key.Digest, Tag: key.Tag}
	if _, err := h.svc.store.UpsertQueued(r.Context(), key, job.Source); err != nil {
		h.log.Error("status retry", "job", key.String(), "err", err)
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if _, err := rq.Retry(r.Context(), job, hex.EncodeToString(b)); err != nil {
		h.log.Error("status retry", "job", key.String(), "err", err)
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	h.log.Info("status retry: job queued again", "job", key.String())
	http.Redirect(w, r, "/status/", http.StatusSeeOther)
}
