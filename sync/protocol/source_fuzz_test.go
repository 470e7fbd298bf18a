package protocol

import "testing"

// FuzzSplitSource: a source names an identity only in the form devices/d or
// devices/d/modules/m, and what it gives builds that very source back;
// anything else is refused, never misread as another identity.
func FuzzSplitSource(f *testing.F) {
	for _, s := range []string{"devices/d1", "devices/d1/modules/m", "devices/", "devices/d/modules/", "devices/a/b",
		"devices/d/modules/m/x", "modules/m", "devices/d/modules/m/modules/n", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		d, m, ok := SplitSource(src)
		if !ok {
			return
		}
		back := "devices/" + d
		if m != "" {
			back += "/modules/" + m
		}
		if back != src {
			t.Fatalf("SplitSource(%q) = %q, %q: that is the source %q", src, d, m, back)
		}
	})
}
