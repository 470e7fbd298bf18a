package broker

import (
	"sync"
	"time"
)

// refusalLogEvery is how often a refusal is logged while publishers keep
// being refused (a full queue or disk refuses thousands a second).
const refusalLogEvery = 10 * time.Second

// limiter lets the first event through, then one per refusalLogEvery, and
// counts the ones it held back.
type limiter struct {
	mu      sync.Mutex
	last    time.Time
	skipped int
}

// allow says whether to log now, and how many were not logged since the
// last one that was.
func (l *limiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < refusalLogEvery {
		l.skipped++
		return false, 0
	}
	n := l.skipped
	l.last, l.skipped = now, 0
	return true, n
}
