package queue

import (
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/kv"
)

// TestBarrier: the barrier finishes after every commit queued on the
// database before it, whoever queued it, and writes nothing itself.
func TestBarrier(t *testing.T) {
	e := newEnv(t, Options{})
	const n = 200
	done := make(chan int, n+1)
	ops := e.db.Stats().Ops.Load()
	for i := range n {
		e.db.CommitAsync([]kv.Op{kv.Set(kv.Key('Z', kv.AppendUint32(nil, uint32(i))), []byte("v"))}, func(err error) {
			if err != nil {
				t.Error(err)
			}
			done <- i
		})
	}
	e.s.Barrier(func(err error) {
		if err != nil {
			t.Error(err)
		}
		done <- -1
	})
	seen := 0
	for seen <= n {
		select {
		case i := <-done:
			if i == -1 && seen != n {
				t.Fatalf("barrier finished after %d of the %d commits queued before it", seen, n)
			}
			seen++
		case <-time.After(10 * time.Second):
			t.Fatal("timed out")
		}
	}
	if got := e.db.Stats().Ops.Load() - ops; got != n {
		t.Errorf("%d ops written for %d commits and a barrier, want %d", got, n, n)
	}
	err := e.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(kv.Key('Z', kv.AppendUint32(nil, n-1)))
		return err
	})
	if err != nil {
		t.Errorf("the last commit before the barrier is not readable: %v", err)
	}
}
