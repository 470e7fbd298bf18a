package localapi

import (
	"encoding/json"
	"fmt"
	"io"
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

// dashboard serves a small read-only page that shows GET /status. The
// full dashboard comes with the operator-experience issue; it uses the
// same session cookie.
func (s *Server) dashboard(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self' 'unsafe-inline'; connect-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, dashboardPage)
}

const dashboardPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>outpost edge</title>
<style>body{font-family:sans-serif;margin:2em}pre{background:#f4f4f4;padding:1em;overflow:auto}</style></head>
<body><h1>outpost edge</h1>
<p>Read-only status (GET /status), refreshed every 5 s. The full dashboard is not built yet.</p>
<pre id="status">loading…</pre>
<script>
async function load() {
  const el = document.getElementById("status");
  try {
    const r = await fetch("/status", {credentials: "same-origin"});
    el.textContent = r.ok ? JSON.stringify(await r.json(), null, 2)
      : r.status + ": " + (await r.json()).message;
  } catch (e) { el.textContent = "the edge does not answer: " + e; }
}
load(); setInterval(load, 5000);
</script></body></html>
`
