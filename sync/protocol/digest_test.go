package protocol

import (
	"path/filepath"
	"regexp"
	"testing"
)

var digestForm = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// FuzzDigestHex: DigestHex accepts exactly sha256:<64 lowercase hex> and
// returns the hex, which is safe as a file name.
func FuzzDigestHex(f *testing.F) {
	const ok = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	for _, s := range []string{ok, ok[:70], "sha256:", "SHA256:" + ok[7:], "sha256:../../x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := DigestHex(s)
		if ok := digestForm.MatchString(s); ok != (err == nil) {
			t.Fatalf("DigestHex(%q) = %q, %v; the form matches: %t", s, h, err, ok)
		}
		if err == nil && (h != s[7:] || filepath.Base(h) != h) {
			t.Fatalf("DigestHex(%q) = %q", s, h)
		}
	})
}
