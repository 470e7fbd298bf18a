package localapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func (f *fixture) loginCode() string {
	f.t.Helper()
	resp, data := f.do(req{method: "POST", path: "/login-codes", body: "{}", ctype: "application/json", token: f.token})
	var lc LoginCode
	if resp.StatusCode != http.StatusOK || json.Unmarshal(data, &lc) != nil || lc.Code == "" || lc.ExpiresInSeconds != 60 {
		f.t.Fatalf("POST /login-codes: %d %s", resp.StatusCode, data)
	}
	return lc.Code
}

func TestLoginURLSingleUse(t *testing.T) {
	f := newFixture(t, nil)
	code := f.loginCode()
	resp, data := f.do(req{path: "/login?code=" + url.QueryEscape(code)})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("GET /login: %d %s, want a redirect to /", resp.StatusCode, data)
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("GET /login set %d cookies", len(cookies))
	}
	c := cookies[0]
	if c.Name != CookieName || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.MaxAge <= 0 || len(c.Value) < 43 {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/, expiring, random", c)
	}
	if strings.Contains(c.Value, f.token) {
		t.Error("the session cookie carries the token")
	}
	session := map[string]string{"Cookie": c.Name + "=" + c.Value}
	// The cookie has the token's rights.
	if resp, data := f.do(req{path: "/twins/sensor1", header: session}); resp.StatusCode != http.StatusOK {
		t.Errorf("twin with the session cookie: %d %s", resp.StatusCode, data)
	}
	if resp, data := f.do(req{method: "POST", path: "/devices/sensor1/messages/deviceBound", body: "{}", ctype: "application/json", header: session}); resp.StatusCode != http.StatusNoContent {
		t.Errorf("C2D with the session cookie: %d %s", resp.StatusCode, data)
	}
	// The same URL a second time: refused, no cookie.
	resp, data = f.do(req{path: "/login?code=" + url.QueryEscape(code)})
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Errorf("second use of the login URL: %d %s %v, want 401 without a cookie", resp.StatusCode, data, resp.Cookies())
	}
	// A made-up session is refused.
	if resp, _ := f.do(req{path: "/twins/sensor1", header: map[string]string{"Cookie": CookieName + "=" + newSecret()}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("made-up session: %d, want 401", resp.StatusCode)
	}
}

func TestLoginCodeAndSessionExpire(t *testing.T) {
	f := newFixture(t, nil)
	code := f.loginCode()
	later := time.Now().Add(61 * time.Second)
	f.now.Store(&later)
	if resp, _ := f.do(req{path: "/login?code=" + url.QueryEscape(code)}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("login code after 61 s: %d, want 401", resp.StatusCode)
	}
	resp, _ := f.do(req{path: "/login?code=" + url.QueryEscape(f.loginCode())})
	session := map[string]string{"Cookie": CookieName + "=" + resp.Cookies()[0].Value}
	if resp, _ := f.do(req{path: "/twins/sensor1", header: session}); resp.StatusCode != http.StatusOK {
		t.Fatalf("fresh session: %d", resp.StatusCode)
	}
	end := later.Add(sessionTTL)
	f.now.Store(&end)
	if resp, _ := f.do(req{path: "/twins/sensor1", header: session}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("session after %v: %d, want 401", sessionTTL, resp.StatusCode)
	}
}

func TestSessionsBounded(t *testing.T) {
	s := newSecrets(time.Now)
	first := s.newSession()
	for range maxSessions {
		s.newSession()
	}
	if s.sessions.Len() != maxSessions || s.validSession(first) {
		t.Errorf("%d sessions kept, first valid %t: want %d, the oldest gone", s.sessions.Len(), s.validSession(first), maxSessions)
	}
	for range 3 * maxCodes {
		s.newCode()
	}
	if s.codes.Len() != maxCodes {
		t.Errorf("%d login codes kept, want %d", s.codes.Len(), maxCodes)
	}
}

func TestTokenFile(t *testing.T) {
	f := newFixture(t, nil)
	path := TokenPath(f.dir)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file %s: %v %v, want mode 0600", path, fi.Mode(), err)
	}
	if len(f.token) < 43 || strings.ContainsAny(f.token, "+/=") {
		t.Errorf("token %d characters of base64url, want ≥ 43 (32 random bytes)", len(f.token))
	}
	if left, _ := filepath.Glob(filepath.Join(f.dir, ".api-token.tmp*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	// A second start keeps the token and narrows a widened mode.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := loadOrCreateToken(f.dir)
	if err != nil || string(tok) != f.token {
		t.Fatalf("second start: token %q %v, want the first", tok, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file left %v", fi.Mode())
	}
	if err := os.WriteFile(path, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadOrCreateToken(f.dir); err == nil || !strings.Contains(err.Error(), "delete the file") {
		t.Errorf("a short token: %v, want an error that says what to do", err)
	}
}

func TestClient(t *testing.T) {
	f := newFixture(t, nil)
	ready := `{"api":"` + f.srv.Addr() + `","pid":1}`
	if err := os.WriteFile(filepath.Join(f.dir, "ready.json"), []byte(ready), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := ClientFromData(f.dir)
	if err != nil || c.Token != f.token || c.Addr != f.srv.Addr() {
		t.Fatalf("ClientFromData: %+v %v", c, err)
	}
	if st, err := c.Status(); err != nil || st.DeviceID != "gw1" {
		t.Errorf("Status: %+v %v", st, err)
	}
	var sb strings.Builder
	if err := c.Logs(context.Background(), "m", 0, false, &sb); err != nil || sb.String() != "secret log line\n" {
		t.Errorf("Logs: %q %v", sb.String(), err)
	}
	if err := (Client{Addr: c.Addr}).Logs(context.Background(), "m", 0, false, &sb); err != ErrNoToken {
		t.Errorf("Logs without a token: %v", err)
	}
	u, err := c.LoginURL(context.Background())
	if err != nil || !strings.HasPrefix(u, "http://"+f.srv.Addr()+"/login?code=") {
		t.Fatalf("LoginURL: %q %v", u, err)
	}
	resp, err := noRedirect.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("GET %s: %d", u, resp.StatusCode)
	}
}

func TestBrowserAddr(t *testing.T) {
	for in, want := range map[string]string{"0.0.0.0:18081": "127.0.0.1:18081", "[::]:1": "127.0.0.1:1", "10.0.0.5:2": "10.0.0.5:2", "gw1:3": "gw1:3"} {
		if got := browserAddr(in); got != want {
			t.Errorf("browserAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestStatusFromSomethingElse: an address that answers /status with
// something other than an edge's status (another service, the hub's port)
// is an error, never an empty status printed with exit 0.
func TestStatusFromSomethingElse(t *testing.T) {
	for name, h := range map[string]http.HandlerFunc{
		"empty JSON": func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "{}") },
		"html":       func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "<html></html>") },
		"401":        func(w http.ResponseWriter, _ *http.Request) { http.Error(w, `{"code":"Unauthorized"}`, 401) },
		"oversized": func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, `{"deviceId":"x","link":"`+strings.Repeat("a", maxStatusBytes)+`"}`)
		},
	} {
		srv := httptest.NewServer(h)
		_, err := FetchStatus(strings.TrimPrefix(srv.URL, "http://"))
		srv.Close()
		if err == nil {
			t.Errorf("%s: FetchStatus succeeded", name)
		}
	}
}
