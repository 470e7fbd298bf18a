package crdt

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// clearIndex answers "largest clear at or above this path" for one
// section in O(1) amortized per path, memoized by path string.
type clearIndex struct {
	m    map[string]*Reg
	memo map[string]Key
}

func newClearIndex(m map[string]*Reg) *clearIndex {
	return &clearIndex{m: m, memo: map[string]Key{}}
}

// upTo returns the largest clear key at ps or any of its ancestors.
func (c *clearIndex) upTo(ps string) Key {
	if k, ok := c.memo[ps]; ok {
		return k
	}
	var k Key
	if ps != "" {
		k = c.upTo(parentOf(ps))
	}
	if r := c.m[ps]; r != nil && r.Clr != nil {
		k = maxKey(k, r.Clr.K)
	}
	c.memo[ps] = k
	return k
}

// above returns the largest clear key on the proper ancestors of ps.
func (c *clearIndex) above(ps string) Key {
	if ps == "" {
		return Key{}
	}
	return c.upTo(parentOf(ps))
}

func parentOf(ps string) string {
	i := strings.LastIndexByte(ps, '.')
	if i < 0 {
		return ""
	}
	return ps[:i]
}

// ancestorClear returns the largest clear key on the proper ancestors of p
// (the root included).
func ancestorClear(m map[string]*Reg, p Path) Key {
	return newClearIndex(m).above(p.String())
}

func regKey(r *Reg) Key {
	if r.Clr != nil {
		return maxKey(r.W.K, r.Clr.K)
	}
	return r.W.K
}

type visibleEntry struct {
	path Path
	w    Write
}

// visible lists the visible registers of sec, shallow first: W is Val or
// Obj and its key is at least every clear on its path.
func (d *Doc) visible(sec Section) []visibleEntry {
	m := d.secs[sec]
	clr := newClearIndex(m)
	var out []visibleEntry
	for ps, r := range m {
		// The own clear matters only while a delta is half delivered: the op
		// that raised it also wrote W with the same key.
		if ps == "" || (r.W.Kind != Val && r.W.Kind != Obj) || r.W.K.Less(clr.upTo(ps)) {
			continue
		}
		out = append(out, visibleEntry{path: ParsePath(ps), w: r.W})
	}
	slices.SortFunc(out, func(a, b visibleEntry) int {
		if c := cmp.Compare(len(a.path), len(b.path)); c != 0 {
			return c
		}
		return strings.Compare(a.path.String(), b.path.String())
	})
	return out
}

// Visible renders the visible document of sec (§3.2 Query). Objects with no
// visible children render as {}. A register whose parent is not a visible
// object (possible only while a delta is half delivered) is skipped.
func (d *Doc) Visible(sec Section) map[string]any {
	root := map[string]any{}
	if !sec.valid() {
		return root
	}
	for _, e := range d.visible(sec) {
		parent := lookupObject(root, e.path[:len(e.path)-1])
		if parent == nil {
			continue
		}
		leaf := e.path[len(e.path)-1]
		if e.w.Kind == Obj {
			parent[leaf] = map[string]any{}
			continue
		}
		if v, err := decodeValue(e.w.Value); err == nil {
			parent[leaf] = v
		}
	}
	return root
}

// lookupObject walks p from root and returns the object there, or nil.
func lookupObject(root map[string]any, p Path) map[string]any {
	cur := root
	for _, s := range p {
		next, ok := cur[s].(map[string]any)
		if !ok {
			return nil
		}
		cur = next
	}
	return cur
}

// LastUpdated returns, for the root ("") and every visible path of sec, the
// TS of the largest key in its subtree: writes, clears and tombstones at or
// under it (for $metadata.$lastUpdated, §3.7). Interior nodes are ≥ their
// children.
func (d *Doc) LastUpdated(sec Section) map[string]HLC {
	out := map[string]HLC{}
	if !sec.valid() {
		return out
	}
	vis := map[string]bool{"": true}
	for _, e := range d.visible(sec) {
		vis[e.path.String()] = true
	}
	best := subtreeMax(d.secs[sec])
	for q := range vis {
		out[q] = best[q].TS
	}
	return out
}

// subtreeMax returns, per path, the largest key at or under it, folding
// children into parents deepest first.
func subtreeMax(m map[string]*Reg) map[string]Key {
	best := map[string]Key{}
	var byDepth [][]string
	push := func(ps string) {
		dep := 0
		if ps != "" {
			dep = strings.Count(ps, ".") + 1
		}
		for len(byDepth) <= dep {
			byDepth = append(byDepth, nil)
		}
		byDepth[dep] = append(byDepth[dep], ps)
	}
	for ps, r := range m {
		best[ps] = regKey(r)
		push(ps)
	}
	for dep := len(byDepth) - 1; dep > 0; dep-- {
		for _, ps := range byDepth[dep] {
			parent := parentOf(ps)
			if _, seen := best[parent]; !seen {
				push(parent)
			}
			best[parent] = maxKey(best[parent], best[ps])
		}
	}
	return best
}

// CloudStamp is the cloud's stamp on desired path p (§3.3): the largest of
// W[p].K, Clr[p].K and every clear on p's proper ancestors.
func (d *Doc) CloudStamp(p Path) Key {
	m := d.secs[Desired]
	k := ancestorClear(m, p)
	if r := m[p.String()]; r != nil {
		k = maxKey(k, r.W.K)
		if r.Clr != nil {
			k = maxKey(k, r.Clr.K)
		}
	}
	return k
}

// SetOverride writes an operator override of desired at p into the overlay
// (value nil removes the override). Its basis is CloudStamp(p), raised to
// the GC floor: every cloud write this replica has not seen has a larger
// key than any causally stable tombstone it dropped, so the raise never
// hides a later cloud change, and GC can never revive a superseded override.
func (d *Doc) SetOverride(p Path, value any, k Key, dt Dot) (Field, error) {
	op := fmt.Sprintf("set override at %q", p.String())
	if len(p) == 0 || !p.valid() {
		return Field{}, fmt.Errorf("%s: %w", op, ErrBadKey)
	}
	w := Write{K: k, D: dt, Kind: Del, Basis: maxKey(d.CloudStamp(p), d.floor)}
	if value != nil {
		b, err := encodeValue(value)
		if err != nil {
			return Field{}, fmt.Errorf("%s: %w", op, err)
		}
		w.Kind, w.Value = Val, b
	}
	f := Field{Section: Overlay, Path: slices.Clone(p), W: w}
	d.Merge(f)
	return f, nil
}

// Override is one live operator override and whether the cloud superseded it.
type Override struct {
	Path       Path
	Value      any
	Key        Key // the operator's write
	Basis      Key // the cloud stamp the operator saw
	Superseded bool
}

// Overrides lists the live overrides, shallow first. An override is
// superseded once the cloud stamp on its path exceeds its basis, i.e. the
// cloud touched the path after the operator saw it.
func (d *Doc) Overrides() []Override {
	var out []Override
	for p, r := range d.Regs(Overlay) {
		if r.W.Kind != Val || len(p) == 0 {
			continue
		}
		v, err := decodeValue(r.W.Value)
		if err != nil {
			continue
		}
		out = append(out, Override{Path: p, Value: v, Key: r.W.K, Basis: r.W.Basis,
			Superseded: r.W.Basis.Less(d.CloudStamp(p))})
	}
	slices.SortStableFunc(out, func(a, b Override) int { return cmp.Compare(len(a.Path), len(b.Path)) })
	return out
}

// Effective is the desired document modules see: visible desired with every
// applicable override written over it, shallow first so that a deeper
// override wins inside a shallower one.
func (d *Doc) Effective() map[string]any {
	eff := d.Visible(Desired)
	for _, o := range d.Overrides() {
		if !o.Superseded {
			setAt(eff, o.Path, o.Value)
		}
	}
	return eff
}

// setAt stores v at p, turning missing or scalar ancestors into objects.
func setAt(root map[string]any, p Path, v any) {
	cur := root
	for _, s := range p[:len(p)-1] {
		next, ok := cur[s].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[s] = next
		}
		cur = next
	}
	cur[p[len(p)-1]] = v
}
