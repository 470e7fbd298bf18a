package queue

import (
	"errors"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/disk"
	"github.com/outpost-edge/outpost/store/disk/disktest"
)

func TestDiskBelowReserveRefusesAppends(t *testing.T) {
	for _, policy := range []Overflow{Reject, DropOldest} {
		t.Run(policy.String(), func(t *testing.T) {
			dir := t.TempDir()
			e := newEnv(t, Options{Space: disktest.Low(t, dir)})
			q := e.queue("q", QueueOptions{Overflow: policy})
			_, err := q.Append(bg, msg(1), msg(2))
			if !errors.Is(err, ErrNoSpace) || !errors.Is(err, ErrFull) || !errors.Is(err, disk.ErrLow) {
				t.Fatalf("append below the reserve: %v; want ErrNoSpace, ErrFull and disk.ErrLow", err)
			}
			st := q.Stats()
			if st.NoSpace != 2 || st.Rejected != 0 || st.Dropped != 0 || st.Depth != 0 {
				t.Fatalf("stats %+v: want 2 refused for space, nothing stored, rejected or dropped", st)
			}
		})
	}
}

// With the disk below its reserve, a partial drain already compacts: the
// queue need not be empty for ingest to get its disk back.
func TestDiskLowReclaimsBeforeEmpty(t *testing.T) {
	e := newEnv(t, Options{ReclaimAfter: 4 << 20})
	q := e.queue("q", QueueOptions{})
	fill(t, q, 40_000, 256, 1000) // ~11 MiB of records
	e.close()
	e.opts.Space = disktest.Low(t, t.TempDir())
	e.open()
	q = e.queue("q", QueueOptions{})
	for acked := 0; acked < 20_000; {
		ms, err := q.Lease(1000, 0)
		if err != nil || len(ms) == 0 {
			t.Fatalf("lease: %d, %v", len(ms), err)
		}
		if err := q.Ack(bg, ms[len(ms)-1].Seq); err != nil {
			t.Fatal(err)
		}
		acked += len(ms)
	}
	deadline := time.Now().Add(30 * time.Second)
	for e.s.reclaims.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no reclaim after draining half the queue on a low disk")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := q.Stats(); st.Depth != 20_000 {
		t.Fatalf("depth %d after the reclaim, want 20000", st.Depth)
	}
}

func TestSetTotalMaxBytes(t *testing.T) {
	e := newEnv(t, Options{})
	q := e.queue("q", QueueOptions{})
	mustAppend(t, q, msg(1))
	b, _, _ := e.s.Totals()
	e.s.SetTotalMaxBytes(b + 10)
	if _, err := q.Append(bg, msg(2)); !errors.Is(err, ErrFull) {
		t.Fatalf("append over the new total cap: %v", err)
	}
	e.s.SetTotalMaxBytes(0)
	mustAppend(t, q, msg(3))
	if _, n, max := e.s.Totals(); n != 2 || max != 0 {
		t.Fatalf("totals: %d messages, cap %d; want 2, 0", n, max)
	}
}
