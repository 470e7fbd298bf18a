package webui

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"sync"
	"time"
)

// Sessions are browser login sessions, in memory only (a restart logs
// every browser out), kept as SHA-256 digests of their ids: the cookie
// holds a random id, never a key.
type Sessions struct {
	ttl time.Duration
	max int
	now func() time.Time
	mu  sync.Mutex
	m   map[[32]byte]time.Time // digest → expiry
}

// NewSessions keeps at most max sessions (the oldest go first), each valid
// for ttl. now is the clock (nil: time.Now).
func NewSessions(ttl time.Duration, max int, now func() time.Time) *Sessions {
	if now == nil {
		now = time.Now
	}
	return &Sessions{ttl: ttl, max: max, now: now, m: map[[32]byte]time.Time{}}
}

// New starts a session and returns its id (32 random bytes, base64url).
func (s *Sessions) New() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24)
	id := base64.RawURLEncoding.EncodeToString(b)
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, exp := range s.m {
		if !now.Before(exp) {
			delete(s.m, k)
		}
	}
	for len(s.m) >= s.max {
		var oldest [32]byte
		var at time.Time
		for k, exp := range s.m {
			if at.IsZero() || exp.Before(at) {
				oldest, at = k, exp
			}
		}
		delete(s.m, oldest)
	}
	s.m[sha256.Sum256([]byte(id))] = now.Add(s.ttl)
	return id
}

// Valid reports whether id names an unexpired session.
func (s *Sessions) Valid(id string) bool {
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.m[k]
	if ok && !s.now().Before(exp) {
		delete(s.m, k)
		return false
	}
	return ok
}

// Take reports whether id names an unexpired session and ends it: a
// single-use secret (the local API's login codes).
func (s *Sessions) Take(id string) bool {
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.m[k]
	delete(s.m, k)
	return ok && s.now().Before(exp)
}

// Len is the number of sessions kept (expired ones included until pruned).
func (s *Sessions) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// End ends a session (logout).
func (s *Sessions) End(id string) {
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, k)
}
