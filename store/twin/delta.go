package twin

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/kv"
)

// Batch is one unit of the twin delta stream between replicas: register
// fields grouped by twin, then commits that let the receiver advance its
// version vector (crdt.Commit). A batch is applied atomically.
type Batch struct {
	Twins   []TwinDelta   `cbor:"1,keyasint,omitempty"`
	Commits []crdt.Commit `cbor:"2,keyasint,omitempty"`
}

// TwinDelta carries one twin's fields and the hub's desired $version.
type TwinDelta struct {
	ID           string       `cbor:"1,keyasint"`
	Fields       []crdt.Field `cbor:"2,keyasint,omitempty"`
	CloudDesired int64        `cbor:"3,keyasint,omitempty"`
}

// Change tells what a remote batch changed in one section of one twin:
// Patch is the IoT Hub patch (nulls for removed properties) that turns the
// old section into the new one, ready for a desired notification.
type Change struct {
	ID      string
	Section crdt.Section
	Version int64
	Patch   map[string]any
}

// Fields counts the register fields in b.
func (b Batch) Fields() int {
	n := 0
	for _, t := range b.Twins {
		n += len(t.Fields)
	}
	return n
}

// Delta returns what a peer whose version vector is peer lacks, at most
// about maxFields fields (a sequence number is never split); more is true
// when there is more to send after this batch. Only the current field of
// each register is sent, so a thousand overwrites of a property cross as
// one field.
func (s *Store) Delta(peer crdt.VV, maxFields int) (b Batch, more bool, err error) {
	return s.DeltaFor(peer, maxFields, nil)
}

// DeltaFor is Delta restricted to the twins keep accepts (nil keeps all):
// a hub sends each edge only the twins in its scope. The commits still
// cover the skipped fields, so the peer's version vector means "everything
// of that origin up to here that is mine", and the next delta does not scan
// them again.
func (s *Store) DeltaFor(peer crdt.VV, maxFields int, keep func(id string) bool) (b Batch, more bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	origins := make([]crdt.ReplicaID, 0, len(s.vv))
	for o := range s.vv {
		origins = append(origins, o)
	}
	slices.Sort(origins)
	byID := map[string]int{} // index into b.Twins
	n := 0
	for _, o := range origins {
		if s.vv[o] <= peer[o] {
			continue
		}
		if n >= maxFields {
			return b, true, nil
		}
		upTo, complete, err := s.deltaOrigin(o, peer[o], maxFields-n, keep, &b, byID, &n)
		if err != nil {
			return Batch{}, false, fmt.Errorf("delta for %s: %w", o, err)
		}
		if upTo = min(upTo, s.vv[o]); complete {
			upTo = s.vv[o]
		}
		if upTo > peer[o] {
			b.Commits = append(b.Commits, crdt.Commit{Origin: o, UpTo: upTo})
		}
		if !complete {
			return b, true, nil
		}
	}
	return b, false, nil
}

type dotRef struct {
	seq   uint64
	id    string
	sec   crdt.Section
	path  crdt.Path
	clear bool
}

// deltaOrigin scans the dot index of origin o after seq from. It returns
// the last sequence number fully included and whether the origin is done.
func (s *Store) deltaOrigin(o crdt.ReplicaID, from uint64, budget int, keep func(string) bool, b *Batch, byID map[string]int, n *int) (uint64, bool, error) {
	refs, complete, err := s.scanDots(o, from, budget)
	if err != nil {
		return 0, false, err
	}
	last := from
	for _, r := range refs {
		if keep != nil && !keep(r.id) {
			last = r.seq
			continue
		}
		t, ok, err := s.load(r.id)
		if err != nil {
			return 0, false, err
		}
		reg, has := t.doc.Reg(r.sec, r.path)
		if !ok || !has {
			return 0, false, fmt.Errorf("dot index names %s %q of %q, which is not stored", r.sec, r.path.String(), r.id)
		}
		i, seen := byID[r.id]
		if !seen {
			i = len(b.Twins)
			b.Twins = append(b.Twins, TwinDelta{ID: r.id, CloudDesired: s.cloudDesired(t)})
			byID[r.id] = i
		}
		td := &b.Twins[i]
		f := crdt.Field{Section: r.sec, Path: r.path, IsClear: r.clear, W: reg.W}
		if r.clear && reg.Clr != nil {
			f.C, f.W = *reg.Clr, crdt.Write{}
		}
		td.Fields = append(td.Fields, f)
		*n++
		last = r.seq
	}
	return last, complete, nil
}

// scanDots reads dot-index entries of o with seq > from, stopping after
// budget entries but never inside one sequence number, so every sequence
// number it returns is complete.
func (s *Store) scanDots(o crdt.ReplicaID, from uint64, budget int) ([]dotRef, bool, error) {
	prefix := kv.AppendString([]byte{kv.PrefixDot}, string(o))
	var refs []dotRef
	complete := true
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(kv.AppendUint64(append([]byte(nil), prefix...), from+1)); it.ValidForPrefix(prefix); it.Next() {
			k := it.Item().Key()[len(prefix):]
			if len(k) < 8 {
				return errors.New("malformed dot index key")
			}
			seq := beUint64(k)
			if len(refs) >= budget && refs[len(refs)-1].seq != seq {
				complete = false
				return nil
			}
			id, sec, p, clear, err := parseDotKey(k[8:])
			if err != nil {
				return err
			}
			refs = append(refs, dotRef{seq: seq, id: id, sec: sec, path: p, clear: clear})
		}
		return nil
	})
	return refs, complete, err
}

func beUint64(b []byte) uint64 {
	var v uint64
	for _, c := range b[:8] {
		v = v<<8 | uint64(c)
	}
	return v
}

func (s *Store) cloudDesired(t *twin) int64 {
	if s.opts.Role == Cloud {
		return t.meta.Versions[crdt.Desired]
	}
	return t.meta.CloudDesired
}

// ApplyDelta merges a batch from a peer atomically. Fields this replica
// already covers are skipped (that is what keeps garbage-collected deletes
// dead against stale replays); fields from an origin that may not write
// their section are refused and counted; a batch stamped by a clock more
// than a day ahead, or malformed, is refused whole.
func (s *Store) ApplyDelta(ctx context.Context, b Batch) ([]Change, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.opts.Replicated {
		return s.applyDelta(ctx, b)
	}
	st := s.currentStamps()
	changes, err := s.applyDelta(ctx, b)
	if err != nil {
		s.undoStamps(st)
	}
	return changes, err
}

// applyDelta is ApplyDelta; s.mu is held.
func (s *Store) applyDelta(ctx context.Context, b Batch) ([]Change, error) {
	if err := s.checkBatch(b); err != nil {
		return nil, fmt.Errorf("apply twin delta: %w: %w", ErrBadDelta, err)
	}
	var w writeSet
	var changes []Change
	var next []*twin
	for _, td := range b.Twins {
		t, ch, err := s.mergeTwin(td, &w)
		if err != nil {
			return nil, fmt.Errorf("apply twin delta to %q: %w", td.ID, err)
		}
		if t != nil {
			next, changes = append(next, t), append(changes, ch...)
		}
	}
	vv := s.vv.Clone()
	for _, c := range b.Commits {
		vv.Advance(c)
	}
	if err := errors.Join(w.addVV(vv), s.addStamps(&w)); err != nil {
		return nil, err
	}
	if err := s.db.Commit(ctx, w.ops...); err != nil {
		return nil, fmt.Errorf("apply twin delta: %w", err)
	}
	s.vv = vv
	for _, t := range next {
		s.cache.put(t)
		s.gcq.add(t.id)
	}
	s.signal()
	return changes, nil
}

// checkBatch refuses malformed batches and clocks beyond the hard skew
// limit before anything is merged.
func (s *Store) checkBatch(b Batch) error {
	for _, td := range b.Twins {
		if err := ValidateID(td.ID); err != nil {
			return err
		}
		for _, f := range td.Fields {
			if err := validatePath(f.Path, s.opts.Limits); err != nil {
				return fmt.Errorf("field of twin %q: %w", td.ID, err)
			}
			k := f.Key()
			for _, h := range []crdt.HLC{k.TS, k.Session} {
				if err := s.clock.Observe(h); err != nil {
					s.stats.SkewedBatches++
					return fmt.Errorf("field of twin %q from %s: %w", td.ID, k.Origin, err)
				}
			}
		}
	}
	return nil
}

func validatePath(p crdt.Path, lim Limits) error {
	if len(p) > lim.MaxDepth {
		return invalid(p, "path deeper than %d levels", lim.MaxDepth)
	}
	for i, seg := range p {
		if err := validateKey(seg, p[:i+1], lim); err != nil {
			return err
		}
	}
	return nil
}

// mergeTwin merges one twin's fields into a copy; it returns nil when
// nothing changed.
func (s *Store) mergeTwin(td TwinDelta, w *writeSet) (*twin, []Change, error) {
	t, ok, err := s.load(td.ID)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		t.meta.Versions = [5]int64{1, 1, 1, 1, 1}
	}
	work := t.doc.Clone()
	next := &twin{id: t.id, doc: work, meta: t.meta}
	var changed []crdt.Field
	secs := map[crdt.Section]bool{}
	for _, f := range td.Fields {
		if s.vv.Covers(f.Dot()) {
			s.stats.Duplicates++
			continue
		}
		s.stats.RemoteFields++
		ok, err := work.MergeChecked(f, s.policy)
		if errors.Is(err, crdt.ErrForbiddenOrigin) {
			s.stats.Forbidden++
			s.log.Warn("refused twin field from a replica that may not write it", "twin", td.ID, "section", f.Section.String(), "origin", string(f.Dot().Origin))
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrBadDelta, err)
		}
		if ok {
			changed, secs[f.Section] = append(changed, f), true
		}
		if f.Section == crdt.Reported && next.meta.Session.Less(f.Key().Session) {
			next.meta.Session = f.Key().Session
		}
	}
	cloudMoved := s.opts.Role == Edge && td.CloudDesired > next.meta.CloudDesired
	if cloudMoved {
		next.meta.CloudDesired = td.CloudDesired
	}
	if len(changed) == 0 && !cloudMoved && ok {
		return nil, nil, nil
	}
	changes := s.sectionChanges(t, next, secs)
	if err := w.addChanged(t.id, t.doc, work, changed); err != nil {
		return nil, nil, err
	}
	if err := w.addMeta(next); err != nil {
		return nil, nil, err
	}
	return next, changes, nil
}

// sectionChanges bumps the $version of every changed section and returns
// the patches that describe the changes.
func (s *Store) sectionChanges(old, next *twin, secs map[crdt.Section]bool) []Change {
	var out []Change
	for _, sec := range []crdt.Section{crdt.Tags, crdt.Desired, crdt.Reported} {
		if secs[sec] {
			next.meta.Versions[sec]++
		}
	}
	if len(secs) == 0 {
		return nil
	}
	before, after := s.view(old), s.view(next) // once, after every version moved
	for _, sec := range []crdt.Section{crdt.Tags, crdt.Desired, crdt.Reported} {
		if !secs[sec] {
			continue
		}
		patch := Diff(sectionOf(before, sec), sectionOf(after, sec))
		if size := Size(sectionOf(after, sec)); size > s.opts.Limits.MaxSection {
			s.log.Warn("twin section over its limit after a merge; new growth is refused", "twin", next.id, "section", sec.String(), "bytes", size)
		}
		version := next.meta.Versions[sec]
		if sec == crdt.Desired {
			version = after.DesiredVersion
		}
		out = append(out, Change{ID: next.id, Section: sec, Version: version, Patch: patch})
	}
	return out
}

func sectionOf(v *View, sec crdt.Section) map[string]any {
	switch sec {
	case crdt.Tags:
		return v.Tags
	case crdt.Desired:
		return v.Desired
	}
	return v.Reported
}
