package queue

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func ttlEnv(t *testing.T) (*env, *fakeClock) {
	clk := newFakeClock()
	return newEnv(t, Options{Now: clk.Now, Mono: clk.Mono}), clk
}

func TestTTLExpiry(t *testing.T) {
	const ttl = time.Hour
	tests := []struct {
		name    string
		move    func(c *fakeClock)
		expired bool
	}{
		{"fresh", func(c *fakeClock) { c.Advance(ttl - time.Second) }, false},
		{"ttl passed", func(c *fakeClock) { c.Advance(ttl) }, true},
		{"wall jumps a year forward", func(c *fakeClock) { c.Jump(365 * 24 * time.Hour) }, false},
		{"wall jumps a year forward, then real time passes", func(c *fakeClock) {
			c.Jump(365 * 24 * time.Hour)
			c.Advance(ttl)
		}, true},
		{"wall jumps a year back", func(c *fakeClock) { c.Jump(-365 * 24 * time.Hour) }, false},
		{"wall jumps back, real time passes", func(c *fakeClock) {
			c.Jump(-365 * 24 * time.Hour)
			c.Advance(ttl)
		}, true},
		{"wall jumps back a little, not early", func(c *fakeClock) {
			c.Advance(ttl / 2)
			c.Jump(-time.Minute)
			c.Advance(ttl / 2)
		}, false},
		{"wall stands still (no RTC), elapsed counts", func(c *fakeClock) {
			c.mu.Lock()
			c.mono += ttl / 2
			c.mu.Unlock()
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, clk := ttlEnv(t)
			q := e.queue("q", QueueOptions{})
			mustAppend(t, q, Message{ID: "a", TTL: ttl}, Message{ID: "b"})
			tt.move(clk)
			got := ids(readAll(t, q))
			want := []string{"a", "b"}
			if tt.expired {
				want = []string{"b"}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("read %v, want %v", got, want)
			}
			if st := q.Stats(); (st.Expired == 1) != tt.expired || st.Depth != int64(len(want)) {
				t.Fatalf("stats = %+v", st)
			}
		})
	}
}

func TestTTLDefaultAndLease(t *testing.T) {
	e, clk := ttlEnv(t)
	q := e.queue("q", QueueOptions{DefaultTTL: time.Minute})
	mustAppend(t, q, Message{ID: "long", TTL: time.Hour}, Message{ID: "short"}, Message{ID: "next", TTL: time.Hour})
	clk.Advance(2 * time.Minute)
	// The expired message sits behind a live one: Lease skips and removes it.
	got, err := q.Lease(10, 0)
	if err != nil || !slices.Equal(ids(got), []string{"long", "next"}) {
		t.Fatalf("lease = %v, %v", ids(got), err)
	}
	st := q.Stats()
	if st.Expired != 1 || st.Depth != 2 {
		t.Fatalf("stats = %+v", st)
	}
	if st.OldestAge != 2*time.Minute {
		t.Errorf("oldest age = %v", st.OldestAge)
	}
	clk.Jump(24 * time.Hour)
	if st := q.Stats(); st.OldestAge != 2*time.Minute {
		t.Errorf("oldest age after a forward wall jump = %v, want 2m", st.OldestAge)
	}
	if err := q.Ack(bg, got[1].Seq); err != nil {
		t.Fatal(err)
	}
	if st := q.Stats(); st.Expired != 1 || st.Acked != 2 || st.Depth != 0 || st.Bytes != 0 {
		t.Fatalf("stats after ack = %+v", st)
	}
}

// The elapsed clock survives a restart: a message enqueued before it keeps
// ageing only by the time the store ran.
func TestTTLAcrossRestart(t *testing.T) {
	e, clk := ttlEnv(t)
	q := e.queue("q", QueueOptions{})
	mustAppend(t, q, Message{ID: "a", TTL: time.Hour})
	clk.Advance(40 * time.Minute)
	e.close()
	// A new process: its monotonic clock restarts near zero, the wall clock
	// was reset (no RTC) to 1970.
	clk.mu.Lock()
	clk.mono = time.Second
	clk.wall = time.Unix(0, 0)
	clk.mu.Unlock()
	e.open()
	q = e.queue("q", QueueOptions{})
	clk.Advance(19 * time.Minute)
	if got := readAll(t, q); len(got) != 1 {
		t.Fatalf("expired early after restart: %v", ids(got))
	}
	clk.Advance(time.Minute)
	if got := readAll(t, q); len(got) != 0 {
		t.Fatalf("not expired after 60 min of runtime: %v", ids(got))
	}
	e.restart()
	if st := e.queue("q", QueueOptions{}).Stats(); st.Expired != 1 || st.Depth != 0 {
		t.Fatalf("expired count not persisted: %+v", st)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The sweep removes expired messages at the head of an unread queue and
// reports them.
func TestSweepExpired(t *testing.T) {
	clk := newFakeClock()
	var logs syncBuffer
	e := newEnv(t, Options{Now: clk.Now, Mono: clk.Mono,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	q := e.queue("q", QueueOptions{DefaultTTL: time.Minute})
	for i := 0; i < 3; i++ {
		mustAppend(t, q, msgs(i*700, 700)...)
	}
	mustAppend(t, q, Message{ID: "keep", TTL: time.Hour})
	clk.Advance(time.Minute)
	e.s.sweep()
	waitIdle(t, q)
	st := q.Stats()
	if st.Expired != 2100 || st.Depth != 1 {
		t.Fatalf("after sweep: %+v", st)
	}
	e.s.sweep() // reports
	if !strings.Contains(logs.String(), "queue messages expired") || !strings.Contains(logs.String(), "count=2100") {
		t.Errorf("expiry not logged: %s", logs.String())
	}
	q.mu.Lock()
	head := q.dur.Head
	q.mu.Unlock()
	if head != 2101 {
		t.Errorf("head cursor = %d, want 2101", head)
	}
}

// waitIdle waits until the queue has nothing in flight.
func waitIdle(t *testing.T, q *Queue) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		q.mu.Lock()
		idle := !q.inflight && len(q.pending) == 0
		q.mu.Unlock()
		if idle {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("queue never became idle")
}
