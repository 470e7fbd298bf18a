package twin

import (
	"bytes"
	"context"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/kv"
)

// IDs lists every twin this replica has, in id order.
func (s *Store) IDs() ([]string, error) {
	var ids []string
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := []byte{kv.PrefixTwin}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			k := it.Item().Key()[1:]
			if i := bytes.IndexByte(k, 0); i >= 0 && len(k) == i+2 && k[i+1] == 'm' {
				ids = append(ids, string(k[:i]))
			}
		}
		return nil
	})
	return ids, err
}

// GC drops tombstones: registers hidden by an ancestor's clear at once, and
// deletes and clears whose dot stable reports as causally stable (every
// replica has acknowledged it, crdt-twin.md §3.5). It never drops anything
// on a timer. It returns how many register fields it removed.
func (s *Store) GC(ctx context.Context, stable func(d crdt.Dot) bool) (int, error) {
	ids, err := s.IDs()
	if err != nil {
		return 0, fmt.Errorf("twin gc: %w", err)
	}
	removed := 0
	for _, id := range ids {
		n, err := s.gcTwin(ctx, id, stable)
		if err != nil {
			return removed, fmt.Errorf("twin gc of %q: %w", id, err)
		}
		removed += n
	}
	return removed, nil
}

func (s *Store) gcTwin(ctx context.Context, id string, stable func(crdt.Dot) bool) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok, err := s.load(id)
	if err != nil || !ok {
		return 0, err
	}
	work := t.doc.Clone()
	removed := work.StableGC(stable)
	if len(removed) == 0 {
		return 0, nil
	}
	next := &twin{id: id, doc: work, meta: t.meta}
	var w writeSet
	if err := w.addChanged(id, t.doc, work, removed); err != nil {
		return 0, err
	}
	if err := w.addMeta(next); err != nil {
		return 0, err
	}
	if err := s.db.Commit(ctx, w.ops...); err != nil {
		return 0, err
	}
	s.cache.put(next)
	s.stats.GCRemoved += int64(len(removed))
	return len(removed), nil
}
