package huburl

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzCheck: whatever the URL list, Check without insecure never lets a
// plain http:// URL to a host that is not loopback through, and Loopback
// agrees with itself on a URL's host with and without a port; and Parse
// never returns an empty list, a duplicate, mixed schemes or a URL that
// does not parse back to itself.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:8080", "https://hub.example.com", "http://localhost.evil.com",
		"http://[::1]:80,http://10.0.0.1", "hub:8080", "http://[::ffff:127.0.0.1]", "ftp://x", "http://127.1", "",
		"https://a , https://b,https://c", "https://a,https://A/", "https://a,,https://b", "http://127.0.0.1:1,https://b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		checkParse(t, raw)
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

func checkParse(t *testing.T, raw string) {
	urls, err := Parse(raw)
	if err != nil {
		return
	}
	if len(urls) == 0 || len(urls) != len(strings.Split(raw, ",")) {
		t.Fatalf("Parse(%q) = %q: not one URL per element", raw, urls)
	}
	seen := map[string]bool{}
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("Parse(%q) returned %q, not an http(s) URL with a host (%v)", raw, s, err)
		}
		if u.Scheme != strings.SplitN(urls[0], ":", 2)[0] {
			t.Fatalf("Parse(%q) returned mixed schemes %q", raw, urls)
		}
		if strings.HasSuffix(s, "/") || u.RawQuery != "" || u.Fragment != "" {
			t.Fatalf("Parse(%q) returned %q with a trailing slash, query or fragment", raw, s)
		}
		if again, err := Parse(s); err != nil || len(again) != 1 || again[0] != s {
			t.Fatalf("Parse(%q) = %q, %v: not stable", s, again, err)
		}
		key := strings.ToLower(u.Scheme+"://"+u.Host) + u.Path
		if seen[key] {
			t.Fatalf("Parse(%q) returned %q twice", raw, s)
		}
		seen[key] = true
	}
}
