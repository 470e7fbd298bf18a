package localapi

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// LoginCode is what POST /login-codes answers: a single-use code for
// GET /login?code=…, valid for ExpiresInSeconds.
type LoginCode struct {
	Code             string `json:"code"`
	ExpiresInSeconds int    `json:"expiresInSeconds"`
}

// loginCode hands the operator (the token's holder) a single-use code
// for a browser: the browser never sees the token.
func (s *Server) loginCode(w http.ResponseWriter, r *http.Request) {
	var opts struct{} // {} for now: no options yet
	if err := json.NewDecoder(r.Body).Decode(&opts); err != nil {
		writeError(w, http.StatusBadRequest, "BadRequest", fmt.Sprintf("want a JSON object such as {} (at most 1 KiB): %v", err))
		return
	}
	writeJSON(w, http.StatusOK, LoginCode{Code: s.secrets.newCode(), ExpiresInSeconds: int(codeTTL.Seconds())})
}

// login consumes a login code, starts a browser session (an HttpOnly,
// SameSite=Strict cookie that scripts and other sites cannot use) and
// redirects to the dashboard. A code works once.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	code := r.URL.Query().Get("code")
	if code == "" || !s.secrets.useCode(code) {
		s.refuse(w, r, http.StatusUnauthorized, "LoginCodeInvalid", "login_code",
			"this login URL is used up, expired (after 60 s) or wrong; run `outpost edge dashboard --data DIR` for a new one")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: s.secrets.newSession(), Path: "/",
		MaxAge: int(sessionTTL.Seconds()), HttpOnly: true, SameSite: http.SameSiteStrictMode})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
