package crdt

import (
	"slices"
	"strings"
)

// StableGC removes what can no longer matter and returns the removed
// fields so that the caller deletes them from storage (§3.5):
//
//   - registers hidden by an ancestor clear (always safe: the kept clear
//     decides their visibility, and a late write with a smaller key would
//     be hidden anyway);
//   - Del writes and clear watermarks whose dot is stable, i.e. every member
//     has applied it and we hold everything each member minted before
//     acknowledging it, so no field with a smaller key can still arrive
//     with an uncovered dot. stable must implement that rule.
//
// A desired tombstone stays while a live override on or under its path has
// a smaller basis: the tombstone is what makes that override superseded.
func (d *Doc) StableGC(stable func(Dot) bool) []Field {
	var removed []Field
	for s := Tags; s <= Reported; s++ {
		removed = append(removed, d.dropHidden(s)...)
	}
	for s := Tags; s < numSections; s++ {
		removed = append(removed, d.dropStable(s, stable)...)
	}
	slices.SortFunc(removed, comparePos)
	return removed
}

// dropHidden removes registers whose every key is below an ancestor clear.
func (d *Doc) dropHidden(sec Section) []Field {
	m := d.secs[sec]
	clr := newClearIndex(m)
	var drop []string
	for ps, r := range m {
		if regKey(r).Less(clr.above(ps)) {
			drop = append(drop, ps)
		}
	}
	var removed []Field
	for _, ps := range drop {
		removed = append(removed, regFields(sec, ParsePath(ps), *m[ps])...)
		delete(m, ps)
	}
	return removed
}

// dropStable removes stable Del writes and clears. Hidden registers are
// gone already, so dropping a clear cannot reveal anything.
func (d *Doc) dropStable(sec Section, stable func(Dot) bool) []Field {
	m := d.secs[sec]
	var removed []Field
	for ps, r := range m {
		p := ParsePath(ps)
		if r.W.Kind == Del && stable(r.W.D) && !d.pinned(sec, ps, r.W.K) {
			removed = append(removed, Field{Section: sec, Path: p, W: r.W})
			d.raiseFloor(sec, r.W.K)
			r.W = Write{}
		}
		if r.Clr != nil && stable(r.Clr.D) && !d.pinned(sec, ps, r.Clr.K) {
			removed = append(removed, Field{Section: sec, Path: p, IsClear: true, C: *r.Clr})
			d.raiseFloor(sec, r.Clr.K)
			r.Clr = nil
		}
		if r.empty() {
			delete(m, ps)
		}
	}
	return removed
}

func (d *Doc) raiseFloor(sec Section, k Key) {
	if sec == Desired {
		d.floor = maxKey(d.floor, k)
	}
}

// pinned reports whether a desired tombstone at ps with key k still
// supersedes a live override on or under ps.
func (d *Doc) pinned(sec Section, ps string, k Key) bool {
	if sec != Desired {
		return false
	}
	for op, r := range d.secs[Overlay] {
		under := ps == "" || op == ps || strings.HasPrefix(op, ps+".")
		if under && r.W.Kind == Val && r.W.Basis.Less(k) {
			return true
		}
	}
	return false
}

// Tombstones counts Del writes and clear watermarks (for alarms and tests).
func (d *Doc) Tombstones() int {
	n := 0
	for s := Tags; s < numSections; s++ {
		for _, r := range d.secs[s] {
			if r.W.Kind == Del {
				n++
			}
			if r.Clr != nil {
				n++
			}
		}
	}
	return n
}
