package queue

import (
	"math/rand/v2"
	"testing"
	"time"
)

// fill appends n messages of size bytes in batches.
func fill(t testing.TB, q *Queue, n, size, batch int) {
	t.Helper()
	r := rand.NewChaCha8([32]byte{1})
	ms := make([]Message, 0, batch)
	for i := 0; i < n; i++ {
		body := make([]byte, size)
		_, _ = r.Read(body) // incompressible, like real payloads
		ms = append(ms, Message{Body: body})
		if len(ms) == batch || i == n-1 {
			mustAppend(t, q, ms...)
			ms = ms[:0]
		}
	}
}

// drain leases and acks everything in batches.
func drain(t testing.TB, q *Queue, batch int) int {
	t.Helper()
	n := 0
	for {
		ms, err := q.Lease(batch, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			return n
		}
		if err := q.Ack(bg, ms[len(ms)-1].Seq); err != nil {
			t.Fatal(err)
		}
		n += len(ms)
	}
}

// After a drain of 200k × 256 B the store gives the disk back by itself.
func TestDiskReclaimedAfterDrain(t *testing.T) {
	const n, size = 200_000, 256
	e := newEnv(t, Options{})
	q := e.queue("q", QueueOptions{})
	base := diskUsage(t, e.dir)
	start := time.Now()
	fill(t, q, n, size, 1000)
	full := diskUsage(t, e.dir)
	t.Logf("filled in %v", time.Since(start))
	if got := drain(t, q, 5000); got != n {
		t.Fatalf("drained %d of %d", got, n)
	}
	t.Logf("drained at %v", time.Since(start))
	deadline := time.Now().Add(60 * time.Second)
	for e.s.reclaims.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no reclaim after the drain")
		}
		time.Sleep(10 * time.Millisecond)
	}
	open := diskUsage(t, e.dir)
	e.restart()
	closed := diskUsage(t, e.dir)
	t.Logf("disk: empty %d KB, %dk×%d B queued %d KB (%.0f B/msg), drained %d KB, after restart %d KB",
		base>>10, n/1000, size, full>>10, float64(full-base)/n, open>>10, closed>>10)
	if open > full/2 {
		t.Errorf("disk after drain and reclaim %d KB, was %d KB full", open>>10, full>>10)
	}
	if st := e.queue("q", QueueOptions{}).Stats(); st.Depth != 0 || st.Acked != n {
		t.Errorf("stats = %+v", st)
	}
}
