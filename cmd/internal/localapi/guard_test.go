package localapi

import (
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestCrossOriginRefused(t *testing.T) {
	f := newFixture(t, nil)
	own := "http://" + f.srv.Addr()
	for _, c := range []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"other site", map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden},
		{"other port", map[string]string{"Origin": "http://127.0.0.1:1"}, http.StatusForbidden},
		{"null", map[string]string{"Origin": "null"}, http.StatusForbidden},
		{"fetch metadata", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"own origin", map[string]string{"Origin": own, "Sec-Fetch-Site": "same-origin"}, http.StatusNoContent},
	} {
		t.Run(c.name, func(t *testing.T) {
			// With the token and a JSON body: only the origin is wrong.
			resp, data := f.do(req{method: "POST", path: "/devices/sensor1/messages/deviceBound", body: `{"a":1}`,
				ctype: "application/json", token: f.token, header: c.header})
			if resp.StatusCode != c.want {
				t.Fatalf("C2D: %d %s, want %d", resp.StatusCode, data, c.want)
			}
			if c.want == http.StatusForbidden && !strings.Contains(string(data), "CrossOrigin") {
				t.Errorf("refusal %s does not say why", data)
			}
		})
	}
	if d := f.depth("c2d/sensor1/p0"); d != 1 {
		t.Errorf("C2D queue holds %d, want only the same-origin message", d)
	}
}

func TestContentTypeRefused(t *testing.T) {
	f := newFixture(t, nil)
	for _, ct := range []string{"", "text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
		for _, path := range []string{"/devices/sensor1/messages/deviceBound", "/twins/sensor1/methods", "/login-codes"} {
			resp, data := f.do(req{method: "POST", path: path, body: `{"methodName":"reboot"}`, ctype: ct, token: f.token})
			if resp.StatusCode != http.StatusUnsupportedMediaType {
				t.Errorf("POST %s as %q: %d %s, want 415", path, ct, resp.StatusCode, data)
			}
		}
	}
	// Methods take JSON only; C2D takes JSON or bytes.
	if resp, _ := f.do(req{method: "POST", path: "/twins/sensor1/methods", body: `{"methodName":"reboot"}`,
		ctype: "application/octet-stream", token: f.token}); resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("method as octet-stream: %d, want 415", resp.StatusCode)
	}
	if f.invoked.Load() != 0 || f.depth("c2d/sensor1/p0") != 0 {
		t.Errorf("refused writes acted: %d methods, %d C2D", f.invoked.Load(), f.depth("c2d/sensor1/p0"))
	}
	f.sendC2D(f.token, "bytes")
	if resp, data := f.do(req{method: "POST", path: "/devices/sensor1/messages/deviceBound", body: `{}`,
		ctype: "application/json; charset=utf-8", token: f.token}); resp.StatusCode != http.StatusNoContent {
		t.Errorf("C2D as JSON: %d %s", resp.StatusCode, data)
	}
}

func TestForeignHostRefused(t *testing.T) {
	f := newFixture(t, nil)
	_, port, _ := strings.Cut(f.srv.Addr(), ":")
	for _, c := range []struct {
		host string
		ok   bool
	}{
		{"evil.example:" + port, false},
		{"evil.example", false},
		{"localhost.evil.example:" + port, false},
		{"127.0.0.1.nip.io:" + port, false},
		{"127.0.0.1:" + port, true},
		{"[::1]:" + port, true},
		{"localhost:" + port, true},
		{"LOCALHOST", true},
		{"gw1.example:" + port, true}, // --hostname
	} {
		for _, path := range []string{"/status", "/twins/sensor1"} {
			resp, data := f.do(req{path: path, host: c.host, token: f.token})
			if got := resp.StatusCode != http.StatusMisdirectedRequest; got != c.ok {
				t.Errorf("GET %s with Host %q: %d %s", path, c.host, resp.StatusCode, data)
			}
		}
	}
}

func TestBodyLimits(t *testing.T) {
	f := newFixture(t, nil)
	big := strings.Repeat("x", 300<<10)
	if resp, data := f.do(req{method: "POST", path: "/devices/sensor1/messages/deviceBound", body: big,
		ctype: "application/octet-stream", token: f.token}); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("C2D of 300 KiB: %d %s, want 413", resp.StatusCode, data)
	}
	if resp, data := f.do(req{method: "POST", path: "/twins/sensor1/methods", body: `{"methodName":"m","payload":"` + big + `"}`,
		ctype: "application/json", token: f.token}); resp.StatusCode < 400 {
		t.Errorf("method of 300 KiB: %d %s, want refused", resp.StatusCode, data)
	}
	if resp, data := f.do(req{method: "POST", path: "/login-codes", body: `{"x":"` + big + `"}`,
		ctype: "application/json", token: f.token}); resp.StatusCode < 400 {
		t.Errorf("login code request of 300 KiB: %d %s, want refused", resp.StatusCode, data)
	}
	if f.invoked.Load() != 0 || f.depth("c2d/sensor1/p0") != 0 {
		t.Error("an oversize write acted")
	}
}

func TestC2DUnknownDeviceRefused(t *testing.T) {
	f := newFixture(t, nil)
	for _, d := range []string{"ghost", "gw1x"} {
		resp, data := f.do(req{method: "POST", path: "/devices/" + d + "/messages/deviceBound", body: "hi",
			ctype: "application/octet-stream", token: f.token})
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("C2D to %s: %d %s, want 404", d, resp.StatusCode, data)
		}
		for name := range f.queues.Stats() {
			if strings.Contains(name, d) {
				t.Errorf("C2D to unknown %s created queue %q", d, name)
			}
		}
	}
}

// FuzzHostAllowed: a Host header is accepted only when its host part is an
// IP literal, localhost or the --hostname.
func FuzzHostAllowed(f *testing.F) {
	for _, h := range []string{"127.0.0.1:1", "[::1]:2", "localhost", "gw1.example:3", "evil.example", "127.0.0.1.evil", "localhost.", "[", ":80"} {
		f.Add(h)
	}
	s := &Server{opts: Options{Hostname: "gw1.example"}}
	f.Fuzz(func(t *testing.T, host string) {
		if !s.hostAllowed(host) {
			return
		}
		h := host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			h = hh
		}
		h = strings.TrimSuffix(strings.Trim(h, "[]"), ".")
		if net.ParseIP(h) == nil && !strings.EqualFold(h, "localhost") && !strings.EqualFold(h, "gw1.example") {
			t.Fatalf("Host %q accepted", host)
		}
	})
}
