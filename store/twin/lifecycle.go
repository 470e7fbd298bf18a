package twin

import (
	"context"
	"fmt"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/kv"
)

// EnsureGeneration creates an empty twin for id unless one exists, and
// ties it to generation gen (the identity's generationId; "" when not
// known). A twin of another generation belongs to an identity that was
// deleted and created again: it is dropped and the twin starts afresh, so
// nothing the old identity had (reported properties above all) reaches the
// new one. reset reports that; it is counted in Stats.Reset.
func (s *Store) EnsureGeneration(ctx context.Context, id, gen string) (reset bool, err error) {
	if err := ValidateID(id); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok, err := s.load(id)
	if err != nil {
		return false, err
	}
	var w writeSet
	switch {
	case ok && (gen == "" || t.meta.Generation == gen):
		return false, nil
	case ok && t.meta.Generation == "":
		t = &twin{id: id, doc: t.doc, meta: t.meta} // adopt: written before the generation was known
	case ok:
		w.addDrop(t)
		reset = true
		fallthrough
	default:
		t = &twin{id: id, doc: &crdt.Doc{}, meta: meta{Versions: [5]int64{1, 1, 1, 1, 1}}}
	}
	t.meta.Generation = gen
	if err := w.addMeta(t); err != nil {
		return false, err
	}
	if err := s.db.Commit(ctx, w.ops...); err != nil {
		return false, fmt.Errorf("create twin %q: %w", id, err)
	}
	s.cache.put(t)
	if reset {
		s.stats.Reset++
		s.log.Info("twin started afresh: its identity was created again", "twin", id, "generation", gen)
		s.signal()
	}
	return reset, nil
}

// Generation returns the generationId a twin belongs to ("" when unknown
// or when there is no such twin).
func (s *Store) Generation(id string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, _, err := s.load(id)
	if err != nil {
		return "", err
	}
	return t.meta.Generation, nil
}

// Delete removes a twin with its registers and dot index entries (its
// identity was deleted, or left this edge's scope). Its dots stay covered
// by the version vector, so nothing of it comes back from a peer that
// still holds it. It reports whether there was such a twin; Stats.Removed
// counts them.
func (s *Store) Delete(ctx context.Context, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok, err := s.load(id)
	if err != nil || !ok {
		return false, err
	}
	var w writeSet
	w.addDrop(t)
	w.ops = append(w.ops, kv.Del(metaKey(id)))
	if err := s.db.Commit(ctx, w.ops...); err != nil {
		return false, fmt.Errorf("delete twin %q: %w", id, err)
	}
	s.cache.drop(id)
	s.gcq.remove(id)
	s.stats.Removed++
	s.signal()
	return true, nil
}

// addDrop removes every register of t and its dot index entries (not its
// meta).
func (w *writeSet) addDrop(t *twin) {
	for s := crdt.Tags; s <= crdt.Overlay; s++ {
		for p, r := range t.doc.Regs(s) {
			w.ops = append(w.ops, kv.Del(regKey(t.id, s, p)))
			w.dropDots(t.id, s, p, r)
		}
	}
}
