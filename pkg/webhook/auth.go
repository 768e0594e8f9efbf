package webhook

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"
)

// authorized reports whether h carries the source's token in its auth
// header, as "Bearer <token>", as the bare token (Harbor sends its policy's
// auth header verbatim; an API key header carries just the key), or as the
// password of Basic credentials (Zot's sink). A missing header or an unset
// token never passes.
func (s SourceConfig) authorized(h http.Header) bool {
	got := h.Get(s.authHeader())
	if got == "" || s.Token == "" {
		return false
	}
	ok := equalSecret(got, s.Token) | equalSecret(got, "Bearer "+s.Token)
	if user, pass, isBasic := parseBasic(got); isBasic {
		_ = user // any user name: the password is the shared secret
		ok |= equalSecret(pass, s.Token)
	}
	return ok == 1
}

// equalSecret compares in constant time, hashing first so that not even
// the length of the secret leaks.
func equalSecret(a, b string) int {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:])
}

func parseBasic(v string) (user, pass string, ok bool) {
	const prefix = "Basic "
	if len(v) < len(prefix) || !strings.EqualFold(v[:len(prefix)], prefix) {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(v[len(prefix):])
	if err != nil {
		return "", "", false
	}
	return strings.Cut(string(raw), ":")
}
