package queue

import (
	"errors"
	"slices"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/kv"
)

// AppendAsyncWith commits its extra keys with the messages, and not at all
// when the append is refused; both survive a restart.
func TestAppendAsyncWithExtraInTheSameCommit(t *testing.T) {
	e := newEnv(t, Options{})
	q := e.queue("q", QueueOptions{MaxCount: 2})
	cursor := []byte{kv.PrefixLink, 'T', 'x'}
	appendWith := func(value string, m ...Message) ([]uint64, error) {
		type res struct {
			seqs []uint64
			err  error
		}
		ch := make(chan res, 1)
		q.AppendAsyncWith(m, []kv.Op{kv.Set(cursor, []byte(value))}, func(s []uint64, err error) { ch <- res{s, err} })
		r := <-ch
		return r.seqs, r.err
	}
	read := func() string {
		var v []byte
		err := e.db.View(func(txn *badger.Txn) error {
			item, err := txn.Get(cursor)
			if errors.Is(err, badger.ErrKeyNotFound) {
				return nil
			} else if err != nil {
				return err
			}
			v, err = item.ValueCopy(nil)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return string(v)
	}
	if seqs, err := appendWith("2", msgs(1, 2)...); err != nil || !slices.Equal(seqs, []uint64{1, 2}) {
		t.Fatalf("append = %v, %v", seqs, err)
	}
	if got := read(); got != "2" {
		t.Fatalf("extra key = %q after the append, want 2", got)
	}
	if _, err := appendWith("3", msg(3)); !errors.Is(err, ErrFull) {
		t.Fatalf("append to a full queue: %v, want ErrFull", err)
	}
	if _, err := appendWith("0"); err != nil { // nothing to append: nothing written
		t.Fatal(err)
	}
	if got := read(); got != "2" {
		t.Fatalf("extra key = %q after refused and empty appends, want 2", got)
	}
	e.restart()
	if got := read(); got != "2" || len(readAll(t, e.queue("q", QueueOptions{}))) != 2 {
		t.Fatalf("after restart: extra key %q", got)
	}
}
