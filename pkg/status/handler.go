package status

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
)

// Handler serves the status API under /status/api/v1/, behind a bearer
// token (Authorization: Bearer TOKEN).
type Handler struct {
	svc   *Service
	token string
	log   *slog.Logger
	mux   *http.ServeMux
}

// NewHandler returns the handler; an empty token refuses every request.
func NewHandler(svc *Service, token string, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{svc: svc, token: token, log: log, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /status/api/v1/images", h.images)
	h.mux.HandleFunc("GET /status/api/v1/repositories", h.repositories)
	h.mux.HandleFunc("GET /status/api/v1/queue", h.queue)
	return h
}

// pages are served to a browser: the login form and the page, which
// accepts the token cookie as well as the header.
func (h *Handler) pages(w http.ResponseWriter, r *http.Request) bool {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/status/":
		h.page(w, r)
	case r.Method == http.MethodPost && r.URL.Path == "/status/login":
		h.login(w, r)
	case r.Method == http.MethodPost && r.URL.Path == "/status/retry":
		h.retry(w, r)
	default:
		return false
	}
	return true
}

func (h *Handler) authorized(r *http.Request) bool {
	if h.token == "" {
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(h.token)) == 1
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.pages(w, r) {
		return
	}
	if !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="status"`)
		writeError(w, http.StatusUnauthorized, "missing or wrong status token")
		return
	}
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) images(w http.ResponseWriter, r *http.Request) {
	ref, err := ParseRef(r.URL.Query().Get("ref"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	img, err := h.svc.Image(r.Context(), ref)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, img)
}

func (h *Handler) repositories(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	reg, repo := q.Get("registry"), q.Get("repository")
	if (reg == "") != (repo == "") {
		writeError(w, http.StatusBadRequest, "registry and repository go together")
		return
	}
	rows, err := h.svc.Repositories(r.Context(), reg, repo)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"repositories": rows})
}

func (h *Handler) queue(w http.ResponseWriter, r *http.Request) {
	st, err := h.svc.Queue(r.Context())
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"queue": st})
}

func (h *Handler) fail(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrBadRef) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	h.log.Error("status request failed", "err", err)
	writeError(w, http.StatusServiceUnavailable, err.Error())
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
