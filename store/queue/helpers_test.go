package queue

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/kv"
)

// fakeClock drives the wall and monotonic clocks separately, so tests can
// jump the wall clock while real (monotonic) time stands still.
type fakeClock struct {
	mu   sync.Mutex
	wall time.Time
	mono time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{wall: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), mono: time.Hour}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wall
}

func (c *fakeClock) Mono() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mono
}

// Advance moves real time: both clocks.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.wall = c.wall.Add(d)
	c.mono += d
	c.mu.Unlock()
}

// Jump moves only the wall clock.
func (c *fakeClock) Jump(d time.Duration) {
	c.mu.Lock()
	c.wall = c.wall.Add(d)
	c.mu.Unlock()
}

// env is a store on a temporary directory that can be restarted.
type env struct {
	t    testing.TB
	dir  string
	dur  kv.Durability
	opts Options
	db   *kv.DB
	s    *Store
}

func newEnv(t testing.TB, opts Options) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), opts: opts}
	e.open()
	t.Cleanup(e.close)
	return e
}

func (e *env) open() {
	e.t.Helper()
	db, err := kv.Open(e.dir, kv.Options{Durability: e.dur})
	if err != nil {
		e.t.Fatal(err)
	}
	s, err := Open(context.Background(), db, e.opts)
	if err != nil {
		_ = db.Close()
		e.t.Fatal(err)
	}
	e.db, e.s = db, s
}

func (e *env) close() {
	if e.s == nil {
		return
	}
	if err := e.s.Close(); err != nil {
		e.t.Error(err)
	}
	if err := e.db.Close(); err != nil {
		e.t.Error(err)
	}
	e.s, e.db = nil, nil
}

// restart closes and reopens the database and the store; queues must be
// opened again.
func (e *env) restart() {
	e.t.Helper()
	e.close()
	e.open()
}

func (e *env) queue(name string, o QueueOptions) *Queue {
	e.t.Helper()
	q, err := e.s.Queue(name, o)
	if err != nil {
		e.t.Fatal(err)
	}
	return q
}

func msg(i int) Message {
	return Message{ID: fmt.Sprintf("m%03d", i), Body: []byte(fmt.Sprintf("body %03d", i))}
}

func msgs(from, n int) []Message {
	out := make([]Message, n)
	for i := range out {
		out[i] = msg(from + i)
	}
	return out
}

func mustAppend(t fataler, q *Queue, ms ...Message) []uint64 {
	t.Helper()
	seqs, err := q.Append(context.Background(), ms...)
	if err != nil {
		t.Fatal(err)
	}
	return seqs
}

func readAll(t fataler, q *Queue) []Message {
	t.Helper()
	var out []Message
	var after uint64
	for {
		ms, err := q.Read(after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			return out
		}
		out = append(out, ms...)
		after = ms[len(ms)-1].Seq
	}
}

func ids(ms []Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// diskUsage is kv.DiskUsage for tests.
func diskUsage(t testing.TB, dir string) int64 {
	t.Helper()
	n, err := kv.DiskUsage(dir)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// fataler is what helpers need from testing.TB and rapid.T.
type fataler interface {
	Helper()
	Fatal(args ...any)
}
