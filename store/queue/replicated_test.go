package queue

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/kv"
)

// dump is every key and value of the store's database.
func dump(t *testing.T, db *kv.DB) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out[string(it.Item().KeyCopy(nil))] = string(v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A Replicated store's state is a function of its calls and of Now: no
// elapsed clock, no sweep, reads that remove nothing, expiry only through
// Expire, and a refused append counted before Append returns.
func TestReplicated(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	mono := func() time.Duration { t.Error("a replicated store read the monotonic clock"); return 0 }
	e := newEnv(t, Options{Now: clk.Now, Mono: mono, Replicated: true, SweepEvery: time.Millisecond})
	q := e.queue("q", QueueOptions{MaxCount: 3})
	mustAppend(t, q, Message{ID: "a", TTL: time.Minute}, Message{ID: "b", TTL: time.Hour}, Message{ID: "c", TTL: time.Minute})
	if _, err := q.Append(ctx, Message{ID: "d"}); err == nil {
		t.Fatal("append to a full queue: no error")
	}
	before := dump(t, e.db)
	clk.Jump(2 * time.Minute) // a and c expire
	if got := ids(readAll(t, q)); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("read %v, want [b]", got)
	}
	if after := dump(t, e.db); !mapsEqual(before, after) {
		t.Fatal("reads (or a sweep, every millisecond) changed a replicated store")
	}
	if st := q.Stats(); st.Depth != 3 || st.Rejected != 1 {
		t.Fatalf("stats %+v, want 3 stored, 1 rejected", st)
	}
	n, err := e.s.Expire(ctx, 10)
	if err != nil || n != 1 {
		t.Fatalf("Expire removed %d (%v), want a at the head only", n, err)
	}
	e.restart()
	q = e.queue("q", QueueOptions{MaxCount: 3})
	if st := q.Stats(); st.Depth != 2 || st.Expired != 1 || st.Rejected != 1 {
		t.Fatalf("after a restart: %+v, want 2 stored, 1 expired, 1 rejected", st)
	}
	if _, ok := dump(t, e.db)[string(clockKey)]; ok {
		t.Fatal("a replicated store saved an elapsed clock")
	}
	clk.Jump(-time.Hour) // a new leader's clock behind: nothing is older
	if n, err := e.s.Expire(ctx, 10); err != nil || n != 0 {
		t.Fatalf("Expire with the clock behind removed %d (%v)", n, err)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// A Replicated store, without a sweep, still logs its losses: what Expire
// removed and the appends a full queue refused.
func TestReplicatedReportsLosses(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	var logs syncBuffer
	e := newEnv(t, Options{Now: clk.Now, Replicated: true, SweepEvery: time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	q := e.queue("q", QueueOptions{MaxCount: 1})
	mustAppend(t, q, Message{ID: "a", TTL: time.Minute})
	if _, err := q.Append(ctx, Message{ID: "b"}); err == nil {
		t.Fatal("append to a full queue: no error")
	}
	clk.Jump(2 * time.Minute)
	if n, err := e.s.Expire(ctx, 10); err != nil || n != 1 {
		t.Fatalf("Expire removed %d (%v), want 1", n, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "queue messages expired") || !strings.Contains(logs.String(), "queue full, messages rejected") {
		if time.Now().After(deadline) {
			t.Fatalf("losses not logged: %s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
