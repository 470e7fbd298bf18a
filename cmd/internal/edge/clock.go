package edge

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/store/wallclock"
)

// FakeTimeEnv names a file that, when set, replaces the system wall clock
// of `outpost edge` — for the clock scenarios only. libfaketime cannot
// reach a Go program (the runtime reads the clock through the vDSO, never
// through libc), so the scenarios use this instead, with libfaketime's
// FAKETIME_TIMESTAMP_FILE semantics: the file is read again whenever it
// changes, and holds
//
//	@2027-12-04 10:00:00   the clock starts there when the file is written, and runs
//	+365d, -2h, +90s       the real clock shifted (d = 24 h)
//	(empty or missing)     the real clock
//
// The monotonic clock is never shifted: a real wall-clock jump does not
// move it either.
const FakeTimeEnv = "OUTPOST_FAKETIME_FILE"

// openClock opens the edge's time estimate on its wall clock.
func (e *edge) openClock(ctx context.Context) error {
	wall := time.Now
	if path := os.Getenv(FakeTimeEnv); path != "" {
		f := &fakeWall{path: path}
		wall = f.now
		e.cfg.Logger.Warn("the wall clock is faked for a test", "env", FakeTimeEnv, "file", path)
	}
	c, err := wallclock.Open(ctx, e.db, wallclock.Options{Logger: e.cfg.Logger, Now: wall, HubConfirms: e.hubURL != ""})
	e.clock = c
	return err
}

// fakeWall is the wall clock a FakeTimeEnv file describes.
type fakeWall struct {
	path string

	mu     sync.Mutex
	mtime  time.Time
	size   int64
	offset time.Duration
}

func (f *fakeWall) now() time.Time {
	real := time.Now().Round(0)
	f.mu.Lock()
	defer f.mu.Unlock()
	if fi, err := os.Stat(f.path); err != nil {
		f.mtime, f.size, f.offset = time.Time{}, 0, 0
	} else if !fi.ModTime().Equal(f.mtime) || fi.Size() != f.size {
		data, _ := os.ReadFile(f.path)
		off, err := parseFakeTime(strings.TrimSpace(string(data)), fi.ModTime())
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v; using the real clock\n", f.path, err)
		}
		f.mtime, f.size, f.offset = fi.ModTime(), fi.Size(), off
	}
	return real.Add(f.offset)
}

// parseFakeTime reads a FakeTimeEnv spec written at mtime into an offset
// from the real clock.
func parseFakeTime(s string, mtime time.Time) (time.Duration, error) {
	switch {
	case s == "":
		return 0, nil
	case strings.HasPrefix(s, "@"):
		t, err := time.Parse(time.DateTime, strings.TrimSpace(s[1:]))
		if err != nil {
			return 0, fmt.Errorf("fake time %q: want @YYYY-MM-DD HH:MM:SS: %w", s, err)
		}
		return t.Sub(mtime), nil
	case strings.HasPrefix(s, "+") || strings.HasPrefix(s, "-"):
		if days, ok := strings.CutSuffix(s, "d"); ok {
			var n int64
			if _, err := fmt.Sscan(days, &n); err != nil {
				return 0, fmt.Errorf("fake time %q: want +Nd: %w", s, err)
			}
			if maxDays := int64(math.MaxInt64 / (24 * time.Hour)); n > maxDays || n < -maxDays {
				return 0, fmt.Errorf("fake time %q: more days than a time.Duration holds (%d)", s, maxDays)
			}
			return time.Duration(n) * 24 * time.Hour, nil
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("fake time %q: want an offset like +365d or -2h: %w", s, err)
		}
		return d, nil
	}
	return 0, fmt.Errorf("fake time %q: want @YYYY-MM-DD HH:MM:SS, an offset like +365d or -2h, or nothing", s)
}
