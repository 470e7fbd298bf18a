// Package ratelog keeps repeated events from flooding the log: a refusal
// that a misbehaving client triggers ten thousand times a second is logged
// once per period with the number of times it was not logged, while every
// occurrence is still counted by its caller's metrics.
//
// Keys must come from a small, fixed set (a refusal reason, not a client
// id): the limiter keeps one entry per key for its lifetime.
package ratelog

import (
	"sync"
	"time"
)

// Limiter lets one event per key through every Every (default 10 s).
// The zero value is ready to use; it is safe for concurrent use.
type Limiter struct {
	Every time.Duration
	Now   func() time.Time // default time.Now

	mu   sync.Mutex
	keys map[string]*entry
}

type entry struct {
	next       time.Time
	suppressed int64
}

// Allow reports whether an event of key should be logged now and, when it
// should, how many events of key were held back since the last one logged.
func (l *Limiter) Allow(key string) (ok bool, suppressed int64) {
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	every := l.Every
	if every <= 0 {
		every = 10 * time.Second
	}
	t := now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys == nil {
		l.keys = map[string]*entry{}
	}
	e := l.keys[key]
	if e == nil {
		e = &entry{}
		l.keys[key] = e
	}
	if t.Before(e.next) {
		e.suppressed++
		return false, 0
	}
	suppressed, e.suppressed = e.suppressed, 0
	e.next = t.Add(every)
	return true, suppressed
}
