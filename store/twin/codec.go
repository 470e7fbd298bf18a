package twin

import (
	"fmt"
	"slices"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/kv"
)

// DecodeBatch decodes a delta batch received from a peer with the hardened
// record decoder; structural problems the decoder cannot see are left to
// ApplyDelta, which refuses the batch whole.
func DecodeBatch(data []byte) (Batch, error) {
	var b Batch
	if err := kv.Unmarshal(data, &b); err != nil {
		return Batch{}, fmt.Errorf("decode twin delta: %w", err)
	}
	return b, nil
}

// The wire form of a Batch is the edge–hub link's wire format: sync/protocol
// carries twin.Batch in its frames (TwinsUp, Push), so the types below and
// their encoding are pinned by sync/protocol's golden test (TestGolden,
// testdata/golden/*.cbor); a change here is a change of the protocol (and
// of the hub's replicated commands that carry a Batch, sync/hub's
// mergeTwins). It is compact, because it crosses slow links:
// replica ids are sent once in a table and referred to by index, HLC walls
// are deltas against the batch's base, and the write and clear of one
// register travel as one entry (a scalar set stamps both with the same key
// and dot, which is then sent once).
type wireBatch struct {
	_       struct{} `cbor:",toarray"`
	Origins []crdt.ReplicaID
	Base    int64
	Twins   []wireTwin
	Commits []wireCommit
}

type wireTwin struct {
	_            struct{} `cbor:",toarray"`
	ID           string
	CloudDesired int64
	Regs         []wireReg
}

type wireReg struct {
	_     struct{} `cbor:",toarray"`
	Sec   crdt.Section
	Path  string
	Kind  crdt.Kind
	Value []byte
	Basis *wireStamp // overlay only
	W     *wireStamp // nil: no write in this entry
	C     *wireStamp // nil: no clear, or (SameClear) the clear equals W
	Same  bool
}

type wireStamp struct {
	_         struct{} `cbor:",toarray"`
	KeyOrigin uint32
	SessWall  int64
	SessLog   uint32
	TSWall    int64
	TSLog     uint32
	DotOrigin uint32
	Seq       uint64
}

type wireCommit struct {
	_      struct{} `cbor:",toarray"`
	Origin uint32
	UpTo   uint64
}

type encoder struct {
	index   map[crdt.ReplicaID]uint32
	origins []crdt.ReplicaID
	base    int64
}

func (e *encoder) origin(id crdt.ReplicaID) uint32 {
	if i, ok := e.index[id]; ok {
		return i
	}
	i := uint32(len(e.origins))
	e.index[id], e.origins = i, append(e.origins, id)
	return i
}

func (e *encoder) stamp(k crdt.Key, d crdt.Dot) *wireStamp {
	return &wireStamp{
		KeyOrigin: e.origin(k.Origin), SessWall: k.Session.Wall - e.base, SessLog: k.Session.Logical,
		TSWall: k.TS.Wall - e.base, TSLog: k.TS.Logical, DotOrigin: e.origin(d.Origin), Seq: d.Seq,
	}
}

// MarshalCBOR encodes the compact wire form.
func (b Batch) MarshalCBOR() ([]byte, error) {
	e := &encoder{index: map[crdt.ReplicaID]uint32{}, base: baseWall(b)}
	w := wireBatch{Base: e.base}
	for _, td := range b.Twins {
		w.Twins = append(w.Twins, wireTwin{ID: td.ID, CloudDesired: td.CloudDesired, Regs: e.regs(td.Fields)})
	}
	for _, c := range b.Commits {
		w.Commits = append(w.Commits, wireCommit{Origin: e.origin(c.Origin), UpTo: c.UpTo})
	}
	w.Origins = e.origins
	return kv.Marshal(w)
}

func baseWall(b Batch) int64 {
	var base int64
	first := true
	for _, td := range b.Twins {
		for _, f := range td.Fields {
			if w := f.Key().TS.Wall; first || w < base {
				base, first = w, false
			}
		}
	}
	return base
}

// regs pairs the write and the clear of each register into one entry.
func (e *encoder) regs(fields []crdt.Field) []wireReg {
	var out []wireReg
	at := map[string]int{}
	for _, f := range fields {
		pos := string(rune(f.Section)) + f.Path.String()
		i, ok := at[pos]
		if !ok {
			i = len(out)
			at[pos] = i
			out = append(out, wireReg{Sec: f.Section, Path: f.Path.String()})
		}
		r := &out[i]
		if f.IsClear {
			r.C = e.stamp(f.C.K, f.C.D)
		} else {
			r.Kind, r.Value, r.W = f.W.Kind, f.W.Value, e.stamp(f.W.K, f.W.D)
			if !f.W.Basis.IsZero() {
				r.Basis = e.stamp(f.W.Basis, crdt.Dot{})
			}
		}
	}
	for i := range out {
		if r := &out[i]; r.W != nil && r.C != nil && *r.W == *r.C {
			r.C, r.Same = nil, true
		}
	}
	return out
}

// UnmarshalCBOR decodes the wire form; indexes outside the origin table
// are refused.
func (b *Batch) UnmarshalCBOR(data []byte) error {
	var w wireBatch
	if err := kv.Unmarshal(data, &w); err != nil {
		return err
	}
	d := decoder{w: &w}
	out := Batch{}
	for _, wt := range w.Twins {
		td := TwinDelta{ID: wt.ID, CloudDesired: wt.CloudDesired}
		for _, r := range wt.Regs {
			fs, err := d.fields(r)
			if err != nil {
				return fmt.Errorf("twin %q: %w", wt.ID, err)
			}
			td.Fields = append(td.Fields, fs...)
		}
		out.Twins = append(out.Twins, td)
	}
	for _, c := range w.Commits {
		o, err := d.origin(c.Origin)
		if err != nil {
			return err
		}
		out.Commits = append(out.Commits, crdt.Commit{Origin: o, UpTo: c.UpTo})
	}
	*b = out
	return nil
}

type decoder struct{ w *wireBatch }

func (d decoder) origin(i uint32) (crdt.ReplicaID, error) {
	if int(i) >= len(d.w.Origins) {
		return "", fmt.Errorf("origin index %d outside the table of %d", i, len(d.w.Origins))
	}
	return d.w.Origins[i], nil
}

func (d decoder) stamp(s *wireStamp) (crdt.Key, crdt.Dot, error) {
	ko, err := d.origin(s.KeyOrigin)
	if err != nil {
		return crdt.Key{}, crdt.Dot{}, err
	}
	do, err := d.origin(s.DotOrigin)
	if err != nil {
		return crdt.Key{}, crdt.Dot{}, err
	}
	k := crdt.Key{
		Session: crdt.HLC{Wall: s.SessWall + d.w.Base, Logical: s.SessLog},
		TS:      crdt.HLC{Wall: s.TSWall + d.w.Base, Logical: s.TSLog}, Origin: ko,
	}
	if s.SessWall == -d.w.Base && s.SessLog == 0 {
		k.Session = crdt.HLC{}
	}
	return k, crdt.Dot{Origin: do, Seq: s.Seq}, nil
}

func (d decoder) fields(r wireReg) ([]crdt.Field, error) {
	p := crdt.ParsePath(r.Path)
	var out []crdt.Field
	if r.W != nil {
		k, dot, err := d.stamp(r.W)
		if err != nil {
			return nil, err
		}
		f := crdt.Field{Section: r.Sec, Path: p, W: crdt.Write{K: k, D: dot, Kind: r.Kind, Value: slices.Clone(r.Value)}}
		if r.Basis != nil {
			if f.W.Basis, _, err = d.stamp(r.Basis); err != nil {
				return nil, err
			}
		}
		out = append(out, f)
		if r.Same {
			out = append(out, crdt.Field{Section: r.Sec, Path: p, IsClear: true, C: crdt.Clear{K: k, D: dot}})
		}
	}
	if r.C != nil {
		k, dot, err := d.stamp(r.C)
		if err != nil {
			return nil, err
		}
		out = append(out, crdt.Field{Section: r.Sec, Path: crdt.ParsePath(r.Path), IsClear: true, C: crdt.Clear{K: k, D: dot}})
	}
	return out, nil
}
