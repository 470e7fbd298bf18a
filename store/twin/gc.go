package twin

import (
	"bytes"
	"context"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/kv"
)

// IDs lists every twin this replica has, in id order. It reads one key per
// twin: past a twin's first key (its meta, which sorts before its
// registers) it seeks to the next twin, so Open does not walk every
// register of every twin.
func (s *Store) IDs() ([]string, error) {
	var ids []string
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := []byte{kv.PrefixTwin}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); {
			k := it.Item().Key()[1:]
			i := bytes.IndexByte(k, 0)
			if i < 0 {
				it.Next()
				continue
			}
			if len(k) == i+2 && k[i+1] == 'm' {
				ids = append(ids, string(k[:i]))
			}
			it.Seek(kv.PrefixEnd(twinPrefix(string(k[:i]))))
		}
		return nil
	})
	return ids, err
}

// Members names the other replicas of a twin (see Ack): at an edge the
// hub, and at a parent edge also the child edge whose subtree holds the
// twin; at the hub the top edge of the tree whose scope holds the twin,
// none when no edge does.
type Members func(id string) []string

// GC drops tombstones of at most max twins that may hold some (changed
// since their last GC, or left with tombstones not yet stable; every twin
// after Open): registers hidden by an ancestor's clear at once, and
// deletes and clears that are causally stable, i.e. every member has
// acknowledged them (crdt.Stable). It never drops
// anything on a timer. Call it after merges and acks; the work per call is
// bounded and twins still waiting for a member go to the back of the line.
// It returns how many register fields it removed.
func (s *Store) GC(ctx context.Context, members Members, max int) (int, error) {
	return s.GCTwins(ctx, members, s.GCTake(max))
}

// GCTake takes up to max twins from the line waiting for GC, for a caller
// that collects them through a replicated command (GCTwins on every
// replica): which twins one GC round looks at is this replica's choice,
// what the round removes is a function of the state.
func (s *Store) GCTake(max int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gcq.take(max)
}

// GCTwins collects the named twins: their tombstones that every member
// acknowledged go. The same ids on the same state remove the same
// tombstones on every replica. A twin left with tombstones (or not
// reached after an error) goes back in the line; one collected leaves it.
func (s *Store) GCTwins(ctx context.Context, members Members, ids []string) (int, error) {
	removed := 0
	for i, id := range ids {
		n, left, err := s.gcTwin(ctx, id, members(id))
		removed += n
		s.mu.Lock()
		switch {
		case err != nil:
			for _, id := range ids[i:] {
				s.gcq.add(id)
			}
		case left:
			s.gcq.add(id)
		default:
			s.gcq.remove(id)
		}
		s.mu.Unlock()
		if err != nil {
			return removed, fmt.Errorf("twin gc of %q: %w", id, err)
		}
	}
	return removed, nil
}

// GCBacklog is how many twins wait for GC.
func (s *Store) GCBacklog() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.gcq.queued)
}

// gcTwin collects one twin; left reports tombstones that are not stable yet.
func (s *Store) gcTwin(ctx context.Context, id string, members []string) (n int, left bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok, err := s.load(id)
	if err != nil || !ok {
		return 0, false, err
	}
	work := t.doc.Clone()
	removed := work.StableGC(s.stableFor(members))
	left = work.Tombstones() > 0
	if len(removed) == 0 {
		return 0, left, nil
	}
	next := &twin{id: id, doc: work, meta: t.meta}
	var w writeSet
	if err := w.addChanged(id, t.doc, work, removed); err != nil {
		return 0, true, err
	}
	if err := w.addMeta(next); err != nil {
		return 0, true, err
	}
	if err := s.db.Commit(ctx, w.ops...); err != nil {
		return 0, true, err
	}
	s.cache.put(next)
	s.stats.GCRemoved += int64(len(removed))
	return len(removed), left, nil
}

// Tombstones counts the tombstones of a twin (tests, alarms).
func (s *Store) Tombstones(id string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, _, err := s.load(id)
	if err != nil {
		return 0, err
	}
	return t.doc.Tombstones(), nil
}

// gcQueue is the line of twins that may hold garbage, in FIFO order
// without duplicates. Store.mu guards it.
type gcQueue struct {
	order  []string
	queued map[string]bool
}

func (q *gcQueue) add(id string) {
	if q.queued == nil {
		q.queued = map[string]bool{}
	}
	if !q.queued[id] {
		q.queued[id] = true
		q.order = append(q.order, id)
	}
}

func (q *gcQueue) remove(id string) {
	if q.queued[id] {
		delete(q.queued, id)
		for i, x := range q.order {
			if x == id {
				q.order = append(q.order[:i], q.order[i+1:]...)
				break
			}
		}
	}
}

func (q *gcQueue) take(max int) []string {
	n := min(max, len(q.order))
	out := append([]string(nil), q.order[:n]...)
	q.order = q.order[n:]
	for _, id := range out {
		delete(q.queued, id)
	}
	return out
}

// Records counts the store's records (twin metas, registers and dot index
// entries): what bounded growth is measured in.
func (s *Store) Records() (int, error) {
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		for _, p := range []byte{kv.PrefixTwin, kv.PrefixDot} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{p}})
			for it.Seek([]byte{p}); it.ValidForPrefix([]byte{p}); it.Next() {
				n++
			}
			it.Close()
		}
		return nil
	})
	return n, err
}

// RunGC collects garbage after every change until ctx is done, for a
// replica that has no link to run GC on its exchanges (a standalone edge:
// members returns no member, so every tombstone is stable at once). Each
// change gives every waiting twin one pass: a twin whose tombstones must
// stay (a desired tombstone that still supersedes a live override) goes
// back in line and waits for the next change instead of being spun on.
func (s *Store) RunGC(ctx context.Context, members Members) error {
	for {
		changed := s.Changed()
		for left := s.GCBacklog(); left > 0; left -= 32 {
			if _, err := s.GC(ctx, members, min(left, 32)); err != nil {
				s.log.Warn("twin GC", "err", err)
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
