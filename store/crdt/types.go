package crdt

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"strings"
)

// ReplicaID names a replica incarnation, e.g. "hub" or "gw1.3f9a". Opaque.
type ReplicaID string

// Dot identifies one op: the replica that minted it and its sequence number.
type Dot struct {
	Origin ReplicaID `cbor:"1,keyasint,omitempty"`
	Seq    uint64    `cbor:"2,keyasint,omitempty"`
}

// Compare orders dots by (Origin, Seq).
func (d Dot) Compare(o Dot) int {
	if c := strings.Compare(string(d.Origin), string(o.Origin)); c != 0 {
		return c
	}
	return cmp.Compare(d.Seq, o.Seq)
}

// Key is the LWW order of writes: lexicographic (Session, TS, Origin).
// Session is zero except in reported, where it is the HLC at which the
// stamping gateway accepted the module's connection (§3.4).
type Key struct {
	Session HLC       `cbor:"1,keyasint,omitempty"`
	TS      HLC       `cbor:"2,keyasint,omitempty"`
	Origin  ReplicaID `cbor:"3,keyasint,omitempty"`
}

// Compare returns -1, 0 or +1.
func (k Key) Compare(o Key) int {
	if c := k.Session.Compare(o.Session); c != 0 {
		return c
	}
	if c := k.TS.Compare(o.TS); c != 0 {
		return c
	}
	return strings.Compare(string(k.Origin), string(o.Origin))
}

// Less reports k < o.
func (k Key) Less(o Key) bool { return k.Compare(o) < 0 }

// IsZero reports whether k is the zero key.
func (k Key) IsZero() bool { return k == Key{} }

func maxKey(a, b Key) Key {
	if a.Less(b) {
		return b
	}
	return a
}

// VV is a version vector: VV[o] = s means every op of o up to s is covered
// (present here, or dominated by something present).
type VV map[ReplicaID]uint64

// Covers reports whether d is covered.
func (v VV) Covers(d Dot) bool { return v[d.Origin] >= d.Seq }

// Merge raises v to the pointwise maximum of v and o.
func (v VV) Merge(o VV) {
	for id, s := range o {
		if s > v[id] {
			v[id] = s
		}
	}
}

// Advance applies a commit received after all fields it covers were merged.
func (v VV) Advance(c Commit) {
	if c.UpTo > v[c.Origin] {
		v[c.Origin] = c.UpTo
	}
}

// Clone returns a copy (never nil).
func (v VV) Clone() VV {
	if v == nil {
		return VV{}
	}
	return maps.Clone(v)
}

// Section is a replicated part of a twin.
type Section uint8

// Sections. Zero is invalid so that a missing value is caught.
const (
	Tags Section = iota + 1
	Desired
	Reported
	Overlay // edge-local overrides of desired (§3.3)
	numSections
)

func (s Section) valid() bool { return s >= Tags && s < numSections }

func (s Section) String() string {
	switch s {
	case Tags:
		return "tags"
	case Desired:
		return "desired"
	case Reported:
		return "reported"
	case Overlay:
		return "overlay"
	}
	return fmt.Sprintf("section(%d)", uint8(s))
}

// Kind is what a write stores. Zero means "no write".
type Kind uint8

// Kinds.
const (
	Val Kind = iota + 1 // scalar or atomic array (canonical JSON in Value)
	Obj                 // an object exists here
	Del                 // tombstone
)

// Path addresses a JSON node; the root is the empty path.
type Path []string

// String joins segments with '.', which IoT Hub keys cannot contain.
func (p Path) String() string { return strings.Join(p, ".") }

// ParsePath is the inverse of Path.String; "" is the root.
func ParsePath(s string) Path {
	if s == "" {
		return Path{}
	}
	return Path(strings.Split(s, "."))
}

// valid reports whether every segment is non-empty and free of '.'.
func (p Path) valid() bool {
	for _, s := range p {
		if s == "" || strings.Contains(s, ".") {
			return false
		}
	}
	return true
}

// Write is the LWW part of a register.
type Write struct {
	K     Key    `cbor:"1,keyasint,omitempty"`
	D     Dot    `cbor:"2,keyasint,omitempty"`
	Kind  Kind   `cbor:"3,keyasint,omitempty"`
	Value []byte `cbor:"4,keyasint,omitempty"` // canonical JSON, Kind == Val
	// Basis is set in the overlay only: the cloud stamp the operator saw.
	Basis Key `cbor:"5,keyasint,omitempty"`
}

// IsZero reports whether there is no write.
func (w Write) IsZero() bool { return w.Kind == 0 }

// compareWrite is a total order: Key first, then the rest as tie-breakers
// so that merge stays a lattice even for malformed duplicates.
func compareWrite(a, b Write) int {
	if c := a.K.Compare(b.K); c != 0 {
		return c
	}
	if c := a.D.Compare(b.D); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Kind, b.Kind); c != 0 {
		return c
	}
	if c := bytes.Compare(a.Value, b.Value); c != 0 {
		return c
	}
	return a.Basis.Compare(b.Basis)
}

// Clear is a watermark: hide everything under the path older than K.
type Clear struct {
	K Key `cbor:"1,keyasint,omitempty"`
	D Dot `cbor:"2,keyasint,omitempty"`
}

func compareClear(a, b Clear) int {
	if c := a.K.Compare(b.K); c != 0 {
		return c
	}
	return a.D.Compare(b.D)
}

// Reg is the register at one path. W is zero when only a clear exists.
type Reg struct {
	W   Write  `cbor:"1,keyasint,omitempty"`
	Clr *Clear `cbor:"2,keyasint,omitempty"`
}

func (r *Reg) empty() bool { return r.W.IsZero() && r.Clr == nil }

// Field is the unit of a delta and of persistence: one register field.
type Field struct {
	Section Section `cbor:"1,keyasint,omitempty"`
	Path    Path    `cbor:"2,keyasint,omitempty"`
	IsClear bool    `cbor:"3,keyasint,omitempty"`
	W       Write   `cbor:"4,keyasint,omitempty"`
	C       Clear   `cbor:"5,keyasint,omitempty"`
}

// Dot returns the dot of the field's write or clear.
func (f Field) Dot() Dot {
	if f.IsClear {
		return f.C.D
	}
	return f.W.D
}

// Key returns the key of the field's write or clear.
func (f Field) Key() Key {
	if f.IsClear {
		return f.C.K
	}
	return f.W.K
}

// compareField orders by dot, then position, for deterministic deltas.
func compareField(a, b Field) int {
	if c := a.Dot().Compare(b.Dot()); c != 0 {
		return c
	}
	return comparePos(a, b)
}

// comparePos orders by (Section, Path, write before clear).
func comparePos(a, b Field) int {
	if c := cmp.Compare(a.Section, b.Section); c != 0 {
		return c
	}
	if c := strings.Compare(a.Path.String(), b.Path.String()); c != 0 {
		return c
	}
	switch {
	case a.IsClear == b.IsClear:
		return 0
	case b.IsClear:
		return -1
	}
	return 1
}

// Commit tells a receiver that every field of Origin up to UpTo has been
// sent before it; see the package doc and VV.Advance.
type Commit struct {
	Origin ReplicaID `cbor:"1,keyasint,omitempty"`
	UpTo   uint64    `cbor:"2,keyasint,omitempty"`
}

// Chunk is one wire unit of a delta stream. Commits apply after Fields.
type Chunk struct {
	Fields  []Field  `cbor:"1,keyasint,omitempty"`
	Commits []Commit `cbor:"2,keyasint,omitempty"`
}

// Policy reports whether origin may write sec. It must be a pure function
// so that every replica rejects the same fields.
type Policy func(sec Section, origin ReplicaID) bool

// OwnershipPolicy is the §3.3 table: tags and desired are written by cloud
// replicas only, reported by edge replicas only, the overlay by anyone.
func OwnershipPolicy(isCloud func(ReplicaID) bool) Policy {
	return func(sec Section, origin ReplicaID) bool {
		switch sec {
		case Tags, Desired:
			return isCloud(origin)
		case Reported:
			return !isCloud(origin)
		case Overlay:
			return true
		}
		return false
	}
}
