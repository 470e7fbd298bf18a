package hub

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/twin"
)

// The tree of edges (IoT Edge's nested edge): an edge device may have a
// parent edge, named as every parent is, by its deviceScope in
// parentScopes. Only the top edge of a tree talks to the hub; its scope
// holds the whole tree below it.

// maxEdgeDepth is the longest chain of edges, the top one included
// (Azure IoT Edge's limit of five layers).
const maxEdgeDepth = 5

// edgeIndex maps the deviceScope of each edge device to the edge: the one
// question of the tree the identity cache cannot answer by a lookup. It
// follows the cache's own changes (identity.Cache.Watch), so it is a
// function of the registry's state, the same on every node and after a
// restore (the FSM opens one with its cache).
type edgeIndex struct {
	ids *identity.Cache

	mu      sync.RWMutex
	byScope map[string][]string // deviceScope → edges, sorted (several only in a registry written before duplicates were refused)
	scopes  map[string]string   // edge → its deviceScope
}

func newEdgeIndex(ids *identity.Cache) *edgeIndex {
	x := &edgeIndex{ids: ids, byScope: map[string][]string{}, scopes: map[string]string{}}
	ids.Watch(x.changed) // before List: a change in between is seen twice, never missed
	all, _ := ids.List()
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, id := range all {
		x.setLocked(id)
	}
	return x
}

// changed updates the index for identities the cache added, changed or
// removed.
func (x *edgeIndex) changed(ids []string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, id := range ids {
		if strings.Contains(id, "/") {
			continue // a module: never an edge
		}
		x.dropLocked(id)
		if d, ok, _ := x.ids.Get(id); ok {
			x.setLocked(d)
		}
	}
}

func (x *edgeIndex) setLocked(d identity.Identity) {
	if d.ModuleID != "" || !d.Edge || d.DeviceScope == "" {
		return
	}
	x.dropLocked(d.DeviceID)
	x.scopes[d.DeviceID] = d.DeviceScope
	l := x.byScope[d.DeviceScope]
	i, _ := slices.BinarySearch(l, d.DeviceID)
	x.byScope[d.DeviceScope] = slices.Insert(l, i, d.DeviceID)
}

func (x *edgeIndex) dropLocked(device string) {
	s, ok := x.scopes[device]
	if !ok {
		return
	}
	delete(x.scopes, device)
	l := slices.DeleteFunc(x.byScope[s], func(e string) bool { return e == device })
	if len(l) == 0 {
		delete(x.byScope, s)
	} else {
		x.byScope[s] = l
	}
}

// edge returns the edge device whose deviceScope is scope.
func (x *edgeIndex) edge(scope string) (string, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if l := x.byScope[scope]; len(l) > 0 {
		return l[0], true
	}
	return "", false
}

// tree reads the tree of edges: lookups in the identity cache and its
// edge index, never a scan of the registry (except height, for registry
// writes).
type tree struct {
	ids   *identity.Cache
	edges *edgeIndex
}

func (h *Hub) tree() tree {
	s := h.fsm.readers.Load()
	return tree{ids: s.ids, edges: s.edges}
}

func (f *FSM) tree() tree { return tree{ids: f.ids, edges: f.edges} }

// parent returns the edge a device connects through ("" when none).
func (t tree) parent(d identity.Identity) string {
	if len(d.ParentScopes) != 1 {
		return ""
	}
	e, _ := t.edges.edge(d.ParentScopes[0])
	return e
}

// owner returns the edge whose own scope holds id ("d" or "d/m"): the
// device itself when it is an edge, else the device's parent edge.
func (t tree) owner(id string) (string, bool) {
	v, ok, _ := t.ids.Get(id)
	if !ok {
		return "", false
	}
	if v.ModuleID != "" {
		if v, ok, _ = t.ids.Get(v.DeviceID); !ok {
			return "", false
		}
	}
	if v.Edge {
		return v.DeviceID, true
	}
	p := t.parent(v)
	return p, p != ""
}

// under reports whether id is in edge's scope: its owner is edge or an
// edge below it. It walks up from id, at most maxEdgeDepth edges.
func (t tree) under(edge, id string) bool {
	e, ok := t.owner(id)
	for range maxEdgeDepth {
		if !ok {
			return false
		}
		if e == edge {
			return true
		}
		d, _, _ := t.ids.Get(e)
		e = t.parent(d)
		ok = e != ""
	}
	return false
}

// checkPath reports whether path (protocol.Message.EdgePath) is the way a
// message of id came up to sender: the first edge's own scope holds id,
// each edge's parent is the next one, the last one's parent is sender. An
// empty path: id is in sender's own scope.
func (t tree) checkPath(sender string, path []string, id string) bool {
	if len(path) > maxEdgeDepth {
		return false
	}
	entry := sender
	if len(path) > 0 {
		entry = path[0]
	}
	if o, ok := t.owner(id); !ok || o != entry {
		return false
	}
	for i, e := range path {
		d, ok, _ := t.ids.Get(e)
		if !ok || d.ModuleID != "" || !d.Edge {
			return false
		}
		next := sender
		if i+1 < len(path) {
			next = path[i+1]
		}
		if t.parent(d) != next {
			return false
		}
	}
	return true
}

// checkDevice refuses a device that would break the tree: a parent that
// is not an edge, an edge below itself, a chain of more than maxEdgeDepth
// edges, a deviceScope another edge holds, an edge with children that
// stops being one or changes its deviceScope. all is the registry.
func (t tree) checkDevice(id, old identity.Identity, exists bool, all []identity.Identity) error {
	if e, ok := t.edges.edge(id.DeviceScope); id.Edge && ok && e != id.DeviceID {
		return fmt.Errorf("%w: deviceScope %q is edge %q's; leave deviceScope out and the hub makes one", ErrInvalid, id.DeviceScope, e)
	}
	if exists && old.Edge && (!id.Edge || id.DeviceScope != old.DeviceScope) {
		if kids := children(all, old.DeviceScope); len(kids) > 0 {
			return fmt.Errorf("%w: edge %q is the parent of %s: it stays an edge device with its deviceScope until they have another parent or are deleted",
				ErrInvalid, id.DeviceID, strings.Join(kids, ", "))
		}
	}
	if len(id.ParentScopes) == 0 {
		return nil
	}
	parent, ok := t.edges.edge(id.ParentScopes[0])
	if !ok {
		return fmt.Errorf("%w: parent scope %q is not the deviceScope of an edge device (GET /devices/{edge} shows it); a parent is an edge device: `outpost device create EDGE --edge`",
			ErrInvalid, id.ParentScopes[0])
	}
	if !id.Edge {
		return nil
	}
	chain := []string{id.DeviceID} // id, then the edges above it
	for e := parent; e != "" && len(chain) <= maxEdgeDepth; {
		chain = append(chain, e)
		if e == id.DeviceID {
			return fmt.Errorf("%w: edge %q cannot have %q as its parent: %q is below it, so %q would be its own ancestor (%s); choose a parent outside its subtree, or none",
				ErrInvalid, id.DeviceID, parent, parent, id.DeviceID, strings.Join(chain, " → "))
		}
		d, _, _ := t.ids.Get(e)
		e = t.parent(d)
	}
	if depth := len(chain) - 1 + t.height(id.DeviceID, all); depth > maxEdgeDepth {
		return fmt.Errorf("%w: edges nest at most %d deep (Azure IoT Edge's limit): edge %q under %q makes a chain of %d (%s, and %d below %q); choose a parent higher up",
			ErrInvalid, maxEdgeDepth, id.DeviceID, parent, depth, strings.Join(chain, " → "), depth-len(chain), id.DeviceID)
	}
	return nil
}

// children lists the devices whose parent has the deviceScope scope.
func children(all []identity.Identity, scope string) []string {
	var out []string
	for _, d := range all {
		if d.ModuleID == "" && slices.Contains(d.ParentScopes, scope) {
			out = append(out, d.DeviceID)
		}
	}
	return out
}

// height is the number of edges in the longest chain from edge down, edge
// included (1 when no edge is below it); it stops past maxEdgeDepth.
func (t tree) height(edge string, all []identity.Identity) int {
	below := map[string][]string{} // edge → its child edges
	for _, d := range all {
		if d.ModuleID == "" && d.Edge {
			if p := t.parent(d); p != "" {
				below[p] = append(below[p], d.DeviceID)
			}
		}
	}
	var walk func(e string, level int) int
	walk = func(e string, level int) int {
		best := level
		if level > maxEdgeDepth {
			return best
		}
		for _, c := range below[e] {
			best = max(best, walk(c, level+1))
		}
		return best
	}
	return walk(edge, 1)
}

// writer returns the edge device whose incarnation o is ("edge:<e>.<inc>"),
// when e is sender or an edge in sender's subtree: the origins whose twin
// fields and commits a TwinsUp of sender may carry (a parent edge relays
// the writes of the edges below it, never stamps them again).
func (t tree) writer(sender string, o crdt.ReplicaID) (string, bool) {
	base, _, ok := twin.SplitReplica(o)
	e, isEdge := strings.CutPrefix(base, "edge:")
	if !ok || !isEdge || !twin.IsEdgeReplica(o, e) {
		return "", false
	}
	if e == sender {
		return e, true
	}
	d, ok, _ := t.ids.Get(e)
	if !ok || d.ModuleID != "" || !d.Edge || !t.under(sender, e) {
		return "", false
	}
	return e, true
}

// top returns the edge at the top of the tree whose scope holds id: the
// edge that links to the hub for it (and acknowledges the hub's twin
// version vector with its pulls). ok is false when no edge serves id.
func (t tree) top(id string) (string, bool) {
	e, ok := t.owner(id)
	if !ok {
		return "", false
	}
	for range maxEdgeDepth {
		d, _, _ := t.ids.Get(e)
		p := t.parent(d)
		if p == "" {
			break
		}
		e = p
	}
	return e, true // past maxEdgeDepth (a broken tree): an edge that never pulls, so GC waits
}

// writers returns the edges below sender whose incarnations wrote fields
// of td, sorted; a field of any origin but sender's incarnations and
// theirs is an ErrInvalid.
func (t tree) writers(sender string, td twin.TwinDelta) ([]string, error) {
	var out []string
	for _, f := range td.Fields {
		o := f.Key().Origin
		if f.Dot().Origin != o {
			// The dot decides whose write it counts as (version vectors,
			// section ownership): it must be the stamper's own.
			return nil, fmt.Errorf("%w: twin %q carries a field stamped by %s under a dot of %s", ErrInvalid, td.ID, o, f.Dot().Origin)
		}
		e, ok := t.writer(sender, o)
		if !ok {
			return nil, fmt.Errorf("%w: twin %q carries a field written by %s; an edge sends only its own writes and those of the edges below it", ErrInvalid, td.ID, o)
		}
		if i, found := slices.BinarySearch(out, e); e != sender && !found {
			out = slices.Insert(out, i, e)
		}
	}
	return out, nil
}

// outside returns the first of edges whose scope does not hold id ("" when
// each does).
func (t tree) outside(edges []string, id string) string {
	for _, e := range edges {
		if !t.under(e, id) {
			return e
		}
	}
	return ""
}
