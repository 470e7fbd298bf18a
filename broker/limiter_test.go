package broker

import (
	"testing"
	"time"
)

// A flood of refusals logs the first, then one line per interval that
// carries how many were not logged.
func TestLimiterLogsFirstThenOnePerInterval(t *testing.T) {
	var l limiter
	t0 := time.Unix(1_000_000, 0)
	steps := []struct {
		at      time.Duration
		ok      bool
		skipped int
	}{
		{0, true, 0},
		{time.Second, false, 0},
		{5 * time.Second, false, 0},
		{refusalLogEvery, true, 2},
		{refusalLogEvery + time.Millisecond, false, 0},
		{3 * refusalLogEvery, true, 1},
	}
	for i, s := range steps {
		ok, skipped := l.allow(t0.Add(s.at))
		if ok != s.ok || skipped != s.skipped {
			t.Errorf("step %d at %v: allow = %v, %d; want %v, %d", i, s.at, ok, skipped, s.ok, s.skipped)
		}
	}
}
