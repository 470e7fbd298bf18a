package twin

import (
	"bytes"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/kv"
)

// Scan calls fn with the view of every twin whose id sorts after after
// ("" for all) and that keep (nil: every one) accepts, in id order, until
// fn returns false; the registers of a twin keep refuses are not read. It reads the twins in
// one pass over the store (one read transaction), which a query over a
// whole fleet needs: a Get per twin costs a transaction and a seek each.
// The views are as committed when the scan began; writes meanwhile are
// not in it.
func (s *Store) Scan(after string, keep func(id string) bool, fn func(*View) bool) error {
	prefix := []byte{kv.PrefixTwin}
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 256})
		defer it.Close()
		start := prefix
		if after != "" {
			start = kv.PrefixEnd(twinPrefix(after))
		}
		var cur *twin
		emit := func() bool {
			if cur == nil {
				return true
			}
			t := cur
			cur = nil
			t.doc.SetGCFloor(t.meta.Floor)
			return fn(s.view(t))
		}
		it.Seek(start)
		for it.ValidForPrefix(prefix) {
			k := it.Item().Key()[1:]
			i := bytes.IndexByte(k, 0)
			if i < 0 || len(k) < i+2 {
				it.Next()
				continue
			}
			id, rest := string(k[:i]), k[i+1:]
			if cur == nil || cur.id != id {
				if !emit() {
					return nil
				}
				if rest[0] != 'm' || (keep != nil && !keep(id)) {
					// Registers without meta are not a twin (yet); a twin
					// keep refuses is not read: on to the next twin.
					it.Seek(kv.PrefixEnd(twinPrefix(id)))
					continue
				}
				cur = &twin{id: id, doc: &crdt.Doc{}}
			}
			switch rest[0] {
			case 'm':
				if err := it.Item().Value(func(b []byte) error { return kv.Unmarshal(b, &cur.meta) }); err != nil {
					return fmt.Errorf("scan twin %q meta: %w", id, err)
				}
			case 'r':
				if len(rest) < 2 {
					return fmt.Errorf("malformed register key %q", it.Item().Key())
				}
				if err := it.Item().Value(func(b []byte) error { return mergeReg(cur.doc, rest[1:], b) }); err != nil {
					return fmt.Errorf("scan twin %q register: %w", id, err)
				}
			}
			it.Next()
		}
		emit()
		return nil
	})
}
