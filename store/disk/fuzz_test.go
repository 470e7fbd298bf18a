package disk

import (
	"errors"
	"strconv"
	"testing"
)

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"512MiB", "1.5GiB", "64k", "1048576", "2 MB", "-1", ".5k", "1e3", "9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			if !errors.Is(err, ErrSize) {
				t.Fatalf("ParseSize(%q): error %v does not wrap ErrSize", s, err)
			}
			return
		}
		if n < 0 || n > 1<<62 {
			t.Fatalf("ParseSize(%q) = %d: out of range", s, n)
		}
		if plain, err := strconv.ParseInt(s, 10, 64); err == nil && plain != n {
			t.Fatalf("ParseSize(%q) = %d, want %d", s, n, plain)
		}
		back, err := ParseSize(FormatSize(n))
		if err != nil {
			t.Fatalf("FormatSize(%d) = %q does not parse: %v", n, FormatSize(n), err)
		}
		if d := back - n; d > n/20+1 || -d > n/20+1 { // one decimal of a unit of at least 1
			t.Fatalf("FormatSize(%d) = %q reads back as %d", n, FormatSize(n), back)
		}
	})
}
