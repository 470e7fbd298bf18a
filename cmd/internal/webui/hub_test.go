package webui

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/identity/sas"
	synchub "github.com/outpost-edge/outpost/sync/hub"
	"github.com/outpost-edge/outpost/sync/protocol"
)

var ownerKey = []byte("owner-key-for-the-dashboard-tests")

type hubFixture struct {
	h   *synchub.Hub
	url string
	now atomic.Pointer[time.Time]
}

// newHubFixture serves an in-memory hub's dashboard (as cmd/internal/hub
// mounts it) on a real port, with an edge gw1 and its child dev1.
func newHubFixture(t *testing.T, secure bool) *hubFixture {
	t.Helper()
	ctx := context.Background()
	h, err := synchub.Open(ctx, "", synchub.Options{HostName: "hub.test", OwnerKey: ownerKey, InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	f := &hubFixture{h: h}
	start := time.Now()
	f.now.Store(&start)
	mux := http.NewServeMux()
	mux.Handle("/ui/", NewHub(HubOptions{Hub: h, OwnerKey: ownerKey, Secure: secure, SessionTTL: time.Hour,
		Now: func() time.Time { return *f.now.Load() }}))
	mux.Handle("/", h.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { h.Stop(); srv.Close(); _ = h.Close() })
	f.url = srv.URL
	gw, err := h.PutDevice(ctx, identity.JSON{DeviceID: "gw1", Capabilities: &identity.Capabilities{IoTEdge: true}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.PutDevice(ctx, identity.JSON{DeviceID: "dev1", ParentScopes: []string{gw.DeviceScope}}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *hubFixture) ownerCS() string {
	return sas.ConnString{HostName: "hub.test", SharedAccessKeyName: "owner", SharedAccessKey: ownerKey}.String()
}

func (f *hubFixture) do(t *testing.T, method, path, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, f.url+path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (f *hubFixture) login(t *testing.T, cs string) (*http.Response, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"connectionString": cs})
	return f.do(t, "POST", "/ui/login", string(body), map[string]string{"Content-Type": "application/json"})
}

func sessionCookie(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == HubCookie {
			return c
		}
	}
	return nil
}

func TestHubLogin(t *testing.T) {
	for _, secure := range []bool{false, true} {
		f := newHubFixture(t, secure)
		if resp, body := f.do(t, "GET", "/ui/", "", nil); resp.StatusCode != 200 || !strings.Contains(body, "outpost hub") ||
			!strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
			t.Fatalf("GET /ui/: %d %q %v", resp.StatusCode, body, resp.Header)
		}
		// Refused: no cookie, a wrong key, a device's connection string, not JSON.
		if resp, _ := f.do(t, "GET", "/ui/api/fleet", "", nil); resp.StatusCode != 401 {
			t.Errorf("fleet without a session: %d, want 401", resp.StatusCode)
		}
		wrong := sas.ConnString{HostName: "hub.test", SharedAccessKeyName: "owner", SharedAccessKey: []byte("not-the-owner-key")}.String()
		device := sas.ConnString{HostName: "hub.test", DeviceID: "dev1", SharedAccessKey: ownerKey}.String()
		for name, cs := range map[string]string{"wrong key": wrong, "device string": device, "garbage": "hello"} {
			resp, body := f.login(t, cs)
			if resp.StatusCode != 401 || sessionCookie(t, resp) != nil || !strings.Contains(body, "owner") {
				t.Errorf("login with %s: %d %q, cookie %v; want 401 naming the owner connection string", name, resp.StatusCode, body, sessionCookie(t, resp))
			}
		}
		if resp, _ := f.do(t, "POST", "/ui/login", `{"connectionString":"`+f.ownerCS()+`"}`, map[string]string{"Content-Type": "text/plain"}); resp.StatusCode != 415 {
			t.Errorf("login as text/plain: %d, want 415", resp.StatusCode)
		}
		resp, _ := f.login(t, f.ownerCS())
		c := sessionCookie(t, resp)
		if resp.StatusCode != 204 || c == nil {
			t.Fatalf("login with the owner connection string: %d, cookie %v", resp.StatusCode, c)
		}
		if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure != secure || c.Path != "/ui/" {
			t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Secure %t, Path /ui/", c, secure)
		}
		if strings.Contains(c.Value, base64.StdEncoding.EncodeToString(ownerKey)) || strings.Contains(c.Value, string(ownerKey)) {
			t.Errorf("the cookie holds the owner key: %q", c.Value)
		}
		auth := map[string]string{"Cookie": HubCookie + "=" + c.Value}
		resp, body := f.do(t, "GET", "/ui/api/fleet", "", auth)
		if resp.StatusCode != 200 || !strings.Contains(body, `"deviceId":"gw1"`) {
			t.Errorf("fleet with the session: %d %q", resp.StatusCode, body)
		}
		if resp, body := f.do(t, "GET", "/ui/api/devices", "", auth); resp.StatusCode != 200 || !strings.Contains(body, `"dev1"`) || strings.Contains(body, "primaryKey") {
			t.Errorf("devices with the session: %d %q (want no keys)", resp.StatusCode, body)
		}
		// Cross-site requests are refused even with the cookie.
		for _, h := range []map[string]string{{"Origin": "http://evil.test"}, {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}} {
			h["Cookie"] = auth["Cookie"]
			if resp, body := f.do(t, "GET", "/ui/api/fleet", "", h); resp.StatusCode != 403 || !strings.Contains(body, "CrossOrigin") {
				t.Errorf("fleet with %v: %d %q, want 403", h, resp.StatusCode, body)
			}
		}
		if resp, _ := f.do(t, "GET", "/ui/api/fleet", "", map[string]string{"Cookie": auth["Cookie"], "Origin": f.url, "Sec-Fetch-Site": "same-origin"}); resp.StatusCode != 200 {
			t.Errorf("fleet from the dashboard's own origin: %d, want 200", resp.StatusCode)
		}
		// The session expires; logout ends it at once.
		later := time.Now().Add(2 * time.Hour)
		f.now.Store(&later)
		if resp, _ := f.do(t, "GET", "/ui/api/fleet", "", auth); resp.StatusCode != 401 {
			t.Errorf("fleet after the session's expiry: %d, want 401", resp.StatusCode)
		}
		resp, _ = f.login(t, f.ownerCS())
		auth = map[string]string{"Cookie": HubCookie + "=" + sessionCookie(t, resp).Value}
		f.do(t, "POST", "/ui/logout", "", auth)
		if resp, _ := f.do(t, "GET", "/ui/api/fleet", "", auth); resp.StatusCode != 401 {
			t.Errorf("fleet after logout: %d, want 401", resp.StatusCode)
		}
	}
}

// The event stream starts with recent events and carries new ones, their
// bodies decoded.
func TestHubEventStream(t *testing.T) {
	f := newHubFixture(t, false)
	resp, _ := f.login(t, f.ownerCS())
	cookie := HubCookie + "=" + sessionCookie(t, resp).Value
	store := func(seq uint64, body string) {
		if _, err := f.h.Messages(context.Background(), "gw1", protocol.Messages{Instance: "edge:gw1.a1", Queue: "$upstream/p0",
			Msgs: []protocol.Message{{Seq: seq, Source: "devices/dev1", Body: []byte(body)}}}); err != nil {
			t.Fatal(err)
		}
	}
	store(1, `{"temp":21}`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r, _ := f.do(t, "GET", "/ui/api/events/stream", "", nil); r.StatusCode != 401 {
		t.Errorf("event stream without a session: %d, want 401", r.StatusCode)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", f.url+"/ui/api/events/stream", nil)
	req.Header.Set("Cookie", cookie)
	sresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer sresp.Body.Close()
	br := bufio.NewReader(sresp.Body)
	next := func() []EventView {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("stream: %v", err)
			}
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				var evs []EventView
				if err := json.Unmarshal([]byte(data), &evs); err != nil {
					t.Fatal(err)
				}
				return evs
			}
		}
	}
	if evs := next(); len(evs) != 1 || evs[0].BodyKind != "json" || evs[0].DeviceID != "dev1" {
		t.Fatalf("first events %+v, want dev1's JSON message", evs)
	}
	store(2, "plain text")
	if evs := next(); len(evs) != 1 || evs[0].BodyKind != "text" || evs[0].Body != "plain text" {
		t.Errorf("live event %+v, want the text body", evs)
	}
}
