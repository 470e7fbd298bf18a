package huburl

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzCheck: whatever the URL list, Check without insecure never lets a
// plain http:// URL to a host that is not loopback through, and Loopback
// agrees with itself on a URL's host with and without a port.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:8080", "https://hub.example.com", "http://localhost.evil.com",
		"http://[::1]:80,http://10.0.0.1", "hub:8080", "http://[::ffff:127.0.0.1]", "ftp://x", "http://127.1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		plain, err := Check(raw, false)
		if err != nil {
			return
		}
		if plain {
			t.Fatalf("Check(%q, false) reports a plain remote URL without an error", raw)
		}
		for _, s := range strings.Split(raw, ",") {
			s = strings.TrimSpace(s)
			if !strings.Contains(s, "://") {
				s = "http://" + s
			}
			u, err := url.Parse(s)
			if err != nil {
				t.Fatalf("Check accepted %q, which does not parse: %v", s, err)
			}
			if u.Scheme == "http" && !Loopback(u.Host) {
				t.Fatalf("Check accepted plain %q to a remote host", s)
			}
		}
	})
}
