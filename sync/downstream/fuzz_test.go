package downstream

import (
	"strings"
	"testing"
)

// FuzzSourceID: a message source names an identity only in the form
// devices/d or devices/d/modules/m, and the id it gives builds that very
// source back; anything else is refused, never misread as another id.
func FuzzSourceID(f *testing.F) {
	for _, s := range []string{"devices/d1", "devices/d1/modules/m", "devices/", "devices/d/modules/", "devices/a/b",
		"devices/d/modules/m/x", "modules/m", "devices/d/modules/m/modules/n", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		id, ok := sourceID(src)
		if !ok {
			return
		}
		d, m, hasModule := strings.Cut(id, "/")
		back := "devices/" + d
		if hasModule {
			back += "/modules/" + m
		}
		if back != src || d == "" || hasModule && (m == "" || strings.Contains(m, "/")) {
			t.Fatalf("sourceID(%q) = %q, which is the source %q", src, id, back)
		}
	})
}
