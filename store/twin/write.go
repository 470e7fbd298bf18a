package twin

import (
	"context"
	"errors"
	"fmt"

	"github.com/outpost-edge/outpost/store/crdt"
)

// Ensure creates the twin (empty, $version 1) if it does not exist yet.
func (s *Store) Ensure(ctx context.Context, id string) error {
	_, err := s.EnsureGeneration(ctx, id, "")
	return err
}

// BeginSession returns the session stamp for a new connection of the
// device or module id: reported writes made through this connection order
// after every write of its earlier connections, whatever the gateways'
// clock skew (store/crdt/hlc.go).
func (s *Store) BeginSession() (crdt.HLC, error) {
	if s.opts.Replicated {
		return crdt.HLC{}, errReplicatedSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clock.Now()
}

// errReplicatedSession: a session stamp is issued outside any change, so
// a Replicated store's state would depend on calls no log carries.
var errReplicatedSession = errors.New("twin: BeginSession on a replicated store (its stamps move only with changes)")

// PatchReported applies a reported-properties patch (JSON) sent by the
// device or module id over a connection opened at session. It returns the
// new reported $version.
func (s *Store) PatchReported(ctx context.Context, id string, session crdt.HLC, patch []byte) (int64, error) {
	return s.local(ctx, id, crdt.Reported, session, patch, false)
}

// PatchDesired merges a desired-properties patch (cloud side).
func (s *Store) PatchDesired(ctx context.Context, id string, patch []byte) (int64, error) {
	return s.local(ctx, id, crdt.Desired, crdt.HLC{}, patch, false)
}

// ReplaceDesired replaces all desired properties (cloud side).
func (s *Store) ReplaceDesired(ctx context.Context, id string, doc []byte) (int64, error) {
	return s.local(ctx, id, crdt.Desired, crdt.HLC{}, doc, true)
}

// PatchTags merges a tags patch (cloud side).
func (s *Store) PatchTags(ctx context.Context, id string, patch []byte) (int64, error) {
	return s.local(ctx, id, crdt.Tags, crdt.HLC{}, patch, false)
}

// ReplaceTags replaces all tags (cloud side).
func (s *Store) ReplaceTags(ctx context.Context, id string, doc []byte) (int64, error) {
	return s.local(ctx, id, crdt.Tags, crdt.HLC{}, doc, true)
}

func (s *Store) writable(sec crdt.Section) bool {
	if s.opts.Role == Cloud {
		return sec == crdt.Desired || sec == crdt.Tags
	}
	return sec == crdt.Reported
}

// local is one local patch: validated whole, stamped with one key and dot,
// applied to a copy, size-checked, committed with its dot index, and only
// then made visible.
func (s *Store) local(ctx context.Context, id string, sec crdt.Section, session crdt.HLC, raw []byte, replace bool) (int64, error) {
	op := fmt.Sprintf("patch %s of twin %q", sec, id)
	if !s.writable(sec) {
		return 0, fmt.Errorf("%s: %w (the %s side writes %s)", op, ErrWrongSide, s.otherSide(), sec)
	}
	if err := ValidateID(id); err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	patch, err := ParsePatch(raw, s.opts.Limits)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok, err := s.load(id)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	if !ok {
		t.meta.Versions = [5]int64{1, 1, 1, 1, 1}
	}
	if sec == crdt.Reported && session.Less(t.meta.Session) {
		return 0, fmt.Errorf("%s: %w", op, ErrStaleSession)
	}
	var st stamps
	if s.opts.Replicated {
		st = s.currentStamps()
	}
	v, err := s.applyLocal(ctx, t, sec, session, patch, replace)
	if err != nil {
		s.undoStamps(st)
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	return v, nil
}

func (s *Store) applyLocal(ctx context.Context, t *twin, sec crdt.Section, session crdt.HLC, patch map[string]any, replace bool) (int64, error) {
	ts, err := s.clock.Now()
	if err != nil {
		return 0, err
	}
	seq, err := s.seq.Next()
	if err != nil {
		return 0, err
	}
	key := crdt.Key{Session: session, TS: ts, Origin: s.self}
	dot := crdt.Dot{Origin: s.self, Seq: seq}
	work := t.doc.Clone()
	var fields []crdt.Field
	if replace {
		fields, err = work.Replace(sec, patch, key, dot)
	} else {
		fields, err = work.Apply(sec, patch, key, dot)
	}
	if err != nil {
		return 0, err
	}
	if err := s.checkSize(work, sec); err != nil {
		return 0, err
	}
	next := &twin{id: t.id, doc: work, meta: t.meta}
	next.meta.Versions[sec]++
	if session.Compare(next.meta.Session) > 0 {
		next.meta.Session = session
	}
	vv := s.vv.Clone()
	vv[s.self] = seq
	var w writeSet
	if err := w.addChanged(t.id, t.doc, work, fields); err != nil {
		return 0, err
	}
	if err := errors.Join(w.addMeta(next), w.addVV(vv), s.addStamps(&w)); err != nil {
		return 0, err
	}
	if err := s.db.Commit(ctx, w.ops...); err != nil {
		return 0, err
	}
	s.vv = vv
	s.cache.put(next)
	s.gcq.add(next.id)
	s.stats.LocalPatches++
	s.signal()
	return next.meta.Versions[sec], nil
}

func (s *Store) checkSize(d *crdt.Doc, sec crdt.Section) error {
	limit := s.opts.Limits.MaxSection
	if sec == crdt.Tags {
		limit = s.opts.Limits.MaxTags
	}
	if n := Size(d.Visible(sec)); n > limit {
		return fmt.Errorf("%w: %s would be %d bytes, the limit is %d; remove properties first", ErrTooLarge, sec, n, limit)
	}
	return nil
}

func (s *Store) otherSide() string {
	if s.opts.Role == Cloud {
		return "edge"
	}
	return "cloud"
}
