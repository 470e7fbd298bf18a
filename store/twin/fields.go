package twin

import (
	"encoding/json"

	"github.com/outpost-edge/outpost/store/crdt"
)

// FieldInfo is one leaf register of a twin as the CRDT holds it: its
// value, which replica wrote it and when (its HLC), for showing the merge
// at work (the edge's dashboard).
type FieldInfo struct {
	Section string          `json:"section"` // tags, desired, reported or overlay
	Path    string          `json:"path"`    // dot-separated
	Value   json.RawMessage `json:"value,omitempty"`
	Deleted bool            `json:"deleted,omitempty"` // a tombstone: the field was removed
	Origin  string          `json:"origin"`            // the replica that wrote it (hub.… or <edge>.<incarnation>)
	Time    string          `json:"time"`              // its HLC wall time, ISO 8601 UTC
	Logical uint32          `json:"logical,omitempty"` // its HLC counter
	// Pending: this replica wrote it and member (the hub, at an edge) has
	// not acknowledged it yet: an offline change still to be sent.
	Pending bool `json:"pending,omitempty"`
}

// Fields lists the leaf registers of twin id (visible values and
// tombstones) in section and path order. Pending is set on this replica's
// writes that member's acknowledgements (Ack) do not cover.
func (s *Store) Fields(id, member string) ([]FieldInfo, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.loadExisting(id)
	if err != nil {
		return nil, err
	}
	acked := crdt.VV{}
	if a, ok := s.acks[member]; ok {
		acked.Merge(a.Stable.VV)
		acked.Merge(a.Pending.VV)
	}
	out := []FieldInfo{}
	for _, sec := range []crdt.Section{crdt.Tags, crdt.Desired, crdt.Reported, crdt.Overlay} {
		out = append(out, s.sectionFields(t.doc, sec, acked)...)
	}
	return out, nil
}

func (s *Store) sectionFields(doc *crdt.Doc, sec crdt.Section, acked crdt.VV) []FieldInfo {
	visible := doc.LastUpdated(sec)
	var out []FieldInfo
	for p, r := range doc.Regs(sec) {
		ps := p.String()
		w := r.W
		switch {
		case ps == "" || (w.Kind != crdt.Val && w.Kind != crdt.Del):
			continue
		case w.Kind == crdt.Val && sec != crdt.Overlay:
			if _, ok := visible[ps]; !ok { // hidden by a newer clear above it
				continue
			}
		}
		f := FieldInfo{Section: sec.String(), Path: ps, Deleted: w.Kind == crdt.Del, Origin: string(w.K.Origin),
			Time: isoTime(w.K.TS), Logical: w.K.TS.Logical}
		if w.Kind == crdt.Val {
			f.Value = json.RawMessage(w.Value)
		}
		f.Pending = w.D.Origin == s.self && !acked.Covers(w.D)
		out = append(out, f)
	}
	return out
}
