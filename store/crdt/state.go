package crdt

import (
	"bytes"
	"fmt"
	"iter"
	"slices"
	"sort"
)

// Doc is one twin's replicated state: registers per section, including the
// overlay. The zero Doc is empty and ready to use.
type Doc struct {
	secs [numSections]map[string]*Reg
	// floor is the largest key of a desired tombstone removed by StableGC.
	// Overlay bases are raised to it so that GC never changes whether an
	// override applies (see SetOverride). Replica-local; callers persist it.
	floor Key
}

func (d *Doc) sec(s Section) map[string]*Reg {
	if d.secs[s] == nil {
		d.secs[s] = map[string]*Reg{}
	}
	return d.secs[s]
}

// Merge joins one field into the state: W keeps the larger Key, Clr keeps
// the larger Key. It reports whether the state changed. The caller has
// checked ownership and VV coverage (or uses MergeChecked). Fields of an
// unknown section are ignored.
func (d *Doc) Merge(f Field) bool {
	if !f.Section.valid() {
		return false
	}
	m := d.sec(f.Section)
	ps := f.Path.String()
	r := m[ps]
	if r == nil {
		r = &Reg{}
	}
	changed := false
	if f.IsClear {
		if r.Clr == nil || compareClear(*r.Clr, f.C) < 0 {
			c := f.C
			r.Clr, changed = &c, true
		}
	} else if f.W.Kind != 0 && (r.W.IsZero() || compareWrite(r.W, f.W) < 0) {
		r.W, changed = cloneWrite(f.W), true
	}
	if changed {
		m[ps] = r
	}
	return changed
}

// MergeChecked validates f, rejects it with ErrForbiddenOrigin when policy
// forbids its origin in its section, and otherwise merges it.
func (d *Doc) MergeChecked(f Field, policy Policy) (bool, error) {
	if err := checkField(f, policy); err != nil {
		return false, fmt.Errorf("merge %s field %q from %s: %w", f.Section, f.Path.String(), f.Dot().Origin, err)
	}
	return d.Merge(f), nil
}

func checkField(f Field, policy Policy) error {
	switch {
	case !f.Section.valid():
		return ErrBadSection
	case !f.Path.valid():
		return fmt.Errorf("path: %w", ErrBadField)
	case !f.IsClear && (f.W.Kind < Val || f.W.Kind > Del):
		return fmt.Errorf("kind %d: %w", f.W.Kind, ErrBadField)
	case policy != nil && !policy(f.Section, f.Dot().Origin):
		return ErrForbiddenOrigin
	}
	return nil
}

func cloneWrite(w Write) Write {
	w.Value = bytes.Clone(w.Value)
	return w
}

// Fields returns every register field in (Section, Path, W before Clr) order.
func (d *Doc) Fields() []Field {
	var out []Field
	for s := Tags; s < numSections; s++ {
		for p, r := range d.Regs(s) {
			out = append(out, regFields(s, p, r)...)
		}
	}
	return out
}

func regFields(s Section, p Path, r Reg) []Field {
	var out []Field
	if !r.W.IsZero() {
		out = append(out, Field{Section: s, Path: p, W: cloneWrite(r.W)})
	}
	if r.Clr != nil {
		out = append(out, Field{Section: s, Path: p, IsClear: true, C: *r.Clr})
	}
	return out
}

// Regs iterates the registers of sec in path order. Values are copies.
func (d *Doc) Regs(sec Section) iter.Seq2[Path, Reg] {
	return func(yield func(Path, Reg) bool) {
		if !sec.valid() {
			return
		}
		m := d.secs[sec]
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			r := *m[k]
			r.W = cloneWrite(r.W)
			if r.Clr != nil {
				c := *r.Clr
				r.Clr = &c
			}
			if !yield(ParsePath(k), r) {
				return
			}
		}
	}
}

// Delta returns every field whose dot vv does not cover, sorted by
// (Origin, Seq). Send it with Chunks.
func (d *Doc) Delta(vv VV) []Field {
	var out []Field
	for _, f := range d.Fields() {
		if !vv.Covers(f.Dot()) {
			out = append(out, f)
		}
	}
	slices.SortStableFunc(out, compareField)
	return out
}

// Chunks splits a delta (sorted by Delta) into chunks of at most size
// fields. After the last field of each origin it adds Commit{origin,
// sender[origin]}; origins the peer lags on without any field to send get
// their commit in the last chunk. sender is the sending replica's VV, peer
// the VV the delta was computed for.
func Chunks(delta []Field, sender, peer VV, size int) []Chunk {
	size = max(size, 1)
	var out []Chunk
	cur := Chunk{}
	done := map[ReplicaID]bool{}
	for i, f := range delta {
		cur.Fields = append(cur.Fields, f)
		o := f.Dot().Origin
		if i+1 == len(delta) || delta[i+1].Dot().Origin != o {
			done[o] = true
			if sender[o] > peer[o] {
				cur.Commits = append(cur.Commits, Commit{Origin: o, UpTo: sender[o]})
			}
		}
		if len(cur.Fields) >= size {
			out, cur = append(out, cur), Chunk{}
		}
	}
	origins := make([]ReplicaID, 0, len(sender))
	for o := range sender {
		origins = append(origins, o)
	}
	slices.Sort(origins)
	for _, o := range origins {
		if !done[o] && sender[o] > peer[o] {
			cur.Commits = append(cur.Commits, Commit{Origin: o, UpTo: sender[o]})
		}
	}
	if len(cur.Fields) > 0 || len(cur.Commits) > 0 {
		out = append(out, cur)
	}
	return out
}

// Clone returns a deep copy.
func (d *Doc) Clone() *Doc {
	c := &Doc{floor: d.floor}
	for _, f := range d.Fields() {
		c.Merge(f)
	}
	return c
}

// Equal reports whether both docs hold the same registers and GC floor.
func (d *Doc) Equal(o *Doc) bool {
	if d.floor != o.floor {
		return false
	}
	a, b := d.Fields(), o.Fields()
	return slices.EqualFunc(a, b, func(x, y Field) bool {
		return comparePos(x, y) == 0 && compareWrite(x.W, y.W) == 0 &&
			compareClear(x.C, y.C) == 0
	})
}

// GCFloor returns the replica-local GC floor to persist with the doc.
func (d *Doc) GCFloor() Key { return d.floor }

// SetGCFloor restores a persisted GC floor (it only ever rises).
func (d *Doc) SetGCFloor(k Key) { d.floor = maxKey(d.floor, k) }
