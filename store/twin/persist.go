package twin

import (
	"container/list"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/kv"
)

// Layout under kv.PrefixTwin ('t'):
//
//	t <id> 0 'm'                       → meta (versions, session fence, GC floor)
//	t <id> 0 'r' <section> <path>      → crdt.Reg of that register
//
// and under kv.PrefixDot ('d'), one entry per register field, so a delta
// since a version vector is a range scan per origin:
//
//	d <origin> 0 <seq u64> <id> 0 <section> <path> 0 <clear 0|1>  → empty

// meta is what a twin keeps besides its registers. Versions are this
// replica's section counters ($version); CloudDesired is the hub's desired
// $version as last heard (edges show it, so PnP acks mean the same on both
// sides).
type meta struct {
	Versions     [5]int64 `cbor:"1,keyasint"`
	CloudDesired int64    `cbor:"2,keyasint,omitempty"`
	Session      crdt.HLC `cbor:"3,keyasint,omitempty"`
	Floor        crdt.Key `cbor:"4,keyasint,omitempty"`
	// Generation is the generationId of the identity the twin belongs to
	// ("" until this replica learns it).
	Generation string `cbor:"5,keyasint,omitempty"`
}

// twin is a decoded twin: its CRDT state and meta.
type twin struct {
	id   string
	doc  *crdt.Doc
	meta meta
}

func twinPrefix(id string) []byte { return kv.AppendString([]byte{kv.PrefixTwin}, id) }

func metaKey(id string) []byte { return append(twinPrefix(id), 'm') }

func regPrefix(id string) []byte { return append(twinPrefix(id), 'r') }

func regKey(id string, sec crdt.Section, p crdt.Path) []byte {
	return append(append(regPrefix(id), byte(sec)), p.String()...)
}

func dotKey(d crdt.Dot, id string, sec crdt.Section, p crdt.Path, clear bool) []byte {
	k := kv.AppendString([]byte{kv.PrefixDot}, string(d.Origin))
	k = kv.AppendUint64(k, d.Seq)
	k = kv.AppendString(k, id)
	k = kv.AppendString(append(k, byte(sec)), p.String())
	if clear {
		return append(k, 1)
	}
	return append(k, 0)
}

// parseDotKey splits a dot-index key (after the origin prefix and seq).
func parseDotKey(rest []byte) (id string, sec crdt.Section, p crdt.Path, clear bool, err error) {
	i := indexZero(rest)
	if i < 0 || len(rest) < i+3 {
		return "", 0, nil, false, errors.New("malformed dot index key")
	}
	id, rest = string(rest[:i]), rest[i+1:]
	sec, rest = crdt.Section(rest[0]), rest[1:]
	j := indexZero(rest)
	if j < 0 || j+2 != len(rest) {
		return "", 0, nil, false, errors.New("malformed dot index key")
	}
	return id, sec, crdt.ParsePath(string(rest[:j])), rest[j+1] == 1, nil
}

func indexZero(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// load returns the twin from the cache or kv; ok is false if it was never
// written. Callers hold s.mu.
func (s *Store) load(id string) (*twin, bool, error) {
	if t := s.cache.get(id); t != nil {
		return t, true, nil
	}
	t := &twin{id: id, doc: &crdt.Doc{}}
	found := false
	err := s.db.View(func(txn *badger.Txn) error {
		err := getRecord(txn, metaKey(id), &t.meta)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		return loadRegs(txn, id, t.doc)
	})
	if err != nil {
		return nil, false, fmt.Errorf("load twin %q: %w", id, err)
	}
	if !found {
		return t, false, nil
	}
	t.doc.SetGCFloor(t.meta.Floor)
	s.cache.put(t)
	return t, true, nil
}

func loadRegs(txn *badger.Txn, id string, doc *crdt.Doc) error {
	prefix := regPrefix(id)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		k := it.Item().Key()[len(prefix):]
		if len(k) < 1 {
			return fmt.Errorf("malformed register key %q", it.Item().Key())
		}
		if err := it.Item().Value(func(b []byte) error { return mergeReg(doc, k, b) }); err != nil {
			return fmt.Errorf("register %q: %w", k, err)
		}
	}
	return nil
}

// mergeReg merges a stored register into doc: k is its key after the
// twin's register prefix (section, path), b its value.
func mergeReg(doc *crdt.Doc, k, b []byte) error {
	r, err := decodeReg(b)
	if err != nil {
		return err
	}
	sec, p := crdt.Section(k[0]), crdt.ParsePath(string(k[1:]))
	if !r.W.IsZero() {
		doc.Merge(crdt.Field{Section: sec, Path: p, W: r.W})
	}
	if r.Clr != nil {
		doc.Merge(crdt.Field{Section: sec, Path: p, IsClear: true, C: *r.Clr})
	}
	return nil
}

// writeSet collects the kv ops of one change: registers rewritten from the
// new state, dot-index entries moved from the old dots to the new.
type writeSet struct {
	ops  []kv.Op
	seen map[string]bool
}

// addChanged records every register position in fields: the register as it
// is in after, and the dot index moved from before's dots to after's.
func (w *writeSet) addChanged(id string, before, after *crdt.Doc, fields []crdt.Field) error {
	if w.seen == nil {
		w.seen = map[string]bool{}
	}
	for _, f := range fields {
		pos := id + "\x00" + string(rune(f.Section)) + f.Path.String()
		if w.seen[pos] {
			continue
		}
		w.seen[pos] = true
		old, hadOld := before.Reg(f.Section, f.Path)
		cur, hasCur := after.Reg(f.Section, f.Path)
		if hadOld {
			w.dropDots(id, f.Section, f.Path, old)
		}
		if !hasCur {
			w.ops = append(w.ops, kv.Del(regKey(id, f.Section, f.Path)))
			continue
		}
		b, err := kv.Marshal(cur)
		if err != nil {
			return err
		}
		w.ops = append(w.ops, kv.Set(regKey(id, f.Section, f.Path), b))
		if !cur.W.IsZero() {
			w.ops = append(w.ops, kv.Set(dotKey(cur.W.D, id, f.Section, f.Path, false), nil))
		}
		if cur.Clr != nil {
			w.ops = append(w.ops, kv.Set(dotKey(cur.Clr.D, id, f.Section, f.Path, true), nil))
		}
	}
	return nil
}

func (w *writeSet) dropDots(id string, sec crdt.Section, p crdt.Path, r crdt.Reg) {
	if !r.W.IsZero() {
		w.ops = append(w.ops, kv.Del(dotKey(r.W.D, id, sec, p, false)))
	}
	if r.Clr != nil {
		w.ops = append(w.ops, kv.Del(dotKey(r.Clr.D, id, sec, p, true)))
	}
}

func (w *writeSet) addMeta(t *twin) error {
	t.meta.Floor = t.doc.GCFloor()
	b, err := kv.Marshal(t.meta)
	if err != nil {
		return err
	}
	w.ops = append(w.ops, kv.Set(metaKey(t.id), b))
	return nil
}

func (w *writeSet) addVV(vv crdt.VV) error {
	b, err := kv.Marshal(vv)
	if err != nil {
		return err
	}
	w.ops = append(w.ops, kv.Set(metaVV, b))
	return nil
}

// cache is a small LRU of decoded twins. Callers hold Store.mu.
type cache struct {
	max   int
	order *list.List
	byID  map[string]*list.Element
}

func newCache(max int) *cache {
	return &cache{max: max, order: list.New(), byID: map[string]*list.Element{}}
}

func (c *cache) get(id string) *twin {
	if e, ok := c.byID[id]; ok {
		c.order.MoveToFront(e)
		return e.Value.(*twin)
	}
	return nil
}

func (c *cache) drop(id string) {
	if e, ok := c.byID[id]; ok {
		c.order.Remove(e)
		delete(c.byID, id)
	}
}

func (c *cache) put(t *twin) {
	if e, ok := c.byID[t.id]; ok {
		e.Value = t
		c.order.MoveToFront(e)
		return
	}
	c.byID[t.id] = c.order.PushFront(t)
	if c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byID, last.Value.(*twin).id)
	}
}

// decodeReg decodes a stored register with the hardened record decoder.
func decodeReg(data []byte) (crdt.Reg, error) {
	var r crdt.Reg
	err := kv.Unmarshal(data, &r)
	return r, err
}
