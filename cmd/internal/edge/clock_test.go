package edge

import (
	"testing"
	"time"
)

func TestParseFakeTime(t *testing.T) {
	mtime := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"+365d", 365 * 24 * time.Hour},
		{"-2h", -2 * time.Hour},
		{"+90s", 90 * time.Second},
		{"@2026-12-04 13:00:00", time.Hour},
		{"@1970-01-01 00:00:00", time.Unix(0, 0).Sub(mtime)},
	} {
		got, err := parseFakeTime(c.in, mtime)
		if err != nil || got != c.want {
			t.Errorf("parseFakeTime(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"tomorrow", "@1970", "+xd", "+1y", "+9999999999999d", "-106752d"} {
		if _, err := parseFakeTime(bad, mtime); err == nil {
			t.Errorf("parseFakeTime(%q) accepted", bad)
		}
	}
}

func FuzzParseFakeTime(f *testing.F) {
	for _, s := range []string{"", "+365d", "-2h", "@1970-01-01 00:00:00", "+", "@", "-9999999999999d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parseFakeTime(s, time.Unix(0, 0)) // never panics
	})
}
