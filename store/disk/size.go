package disk

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrSize is returned by ParseSize for text that is not a byte size.
var ErrSize = errors.New("disk: not a byte size")

var units = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40},
	{"b", 1},
}

// ParseSize reads a byte size: an integer with an optional unit, e.g.
// "1048576", "512MiB", "1.5GiB", "64k" (IEC: KiB, MiB, GiB, TiB and the
// short K, M, G, T; SI: kB, MB, GB, TB). Case and a space before the unit
// do not matter. Sizes are from 0 to 2^62 bytes; a fraction of a unit
// rounds down to whole bytes.
func ParseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	if t == "" || strings.ContainsAny(t, "+-eEx_") {
		return 0, fmt.Errorf("%w: %q (want e.g. 536870912, 512MiB or 1.5GiB)", ErrSize, s)
	}
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		if n > (1<<62)/mult {
			return 0, fmt.Errorf("%w: %q is larger than 2^62 bytes", ErrSize, s)
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%w: %q (want e.g. 536870912, 512MiB or 1.5GiB)", ErrSize, s)
	}
	v := f * float64(mult)
	if v > 1<<62 {
		return 0, fmt.Errorf("%w: %q is larger than 2^62 bytes", ErrSize, s)
	}
	if mult == 1 && v != math.Trunc(v) {
		return 0, fmt.Errorf("%w: %q is not a whole number of bytes", ErrSize, s)
	}
	return int64(v), nil // a fraction of a unit rounds down to whole bytes
}

// FormatSize prints n in the largest IEC unit that keeps it readable,
// e.g. "512MiB", "1.5GiB", "1000B"; ParseSize reads it back (rounded to
// 0.1 of the unit).
func FormatSize(n int64) string {
	for _, u := range []struct {
		s string
		m int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.m || -n >= u.m {
			if n%u.m == 0 {
				return strconv.FormatInt(n/u.m, 10) + u.s
			}
			return strconv.FormatFloat(float64(n)/float64(u.m), 'f', 1, 64) + u.s
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
