package hub

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// The hub's side of the link. Every handler is called for an authenticated
// edge device (edge) with a decoded frame.

// Hello answers an edge opening a session.
func (h *Hub) Hello(edge string, m protocol.Hello) (protocol.Welcome, error) {
	if m.Version != protocol.Version {
		return protocol.Welcome{}, fmt.Errorf("%w: protocol version %d; this hub speaks %d", ErrInvalid, m.Version, protocol.Version)
	}
	if err := h.checkInstance(edge, m.Instance); err != nil {
		return protocol.Welcome{}, err
	}
	cur, err := h.cursors(m.Instance)
	if err != nil {
		return protocol.Welcome{}, err
	}
	return protocol.Welcome{Version: protocol.Version, Cursors: cur, TwinVV: h.twins().VV(), HubTime: h.opts.Now().UnixMilli(), Hub: string(h.twins().Replica())}, nil
}

// checkInstance refuses an incarnation that is not the edge's own: an edge
// writes twins only under "edge:<its id>.<incarnation>" (and an edge "gw"
// may not use the incarnations of an edge "gw.1").
func (h *Hub) checkInstance(edge, instance string) error {
	if !twin.IsEdgeReplica(crdt.ReplicaID(instance), edge) || len(instance) > 256 {
		return fmt.Errorf("%w: instance %q is not an incarnation of edge %q", ErrInvalid, instance, edge)
	}
	// An edge below another links through its parent: pulling here too, it
	// would take its subtree's C2D a second time (the top edge hands them
	// down) and ack twins for nobody.
	if self, ok, _ := h.ids().Get(edge); ok {
		if p := h.tree().parent(self); p != "" {
			return fmt.Errorf("%w: edge %q has the parent edge %q and links through it (its --hub-url is %s's --downstream address), not to the hub",
				errForbidden, edge, p, p)
		}
	}
	return nil
}

// Messages stores a batch from one of the edge's upstream queues.
func (h *Hub) Messages(ctx context.Context, edge string, m protocol.Messages) (protocol.MessagesAck, error) {
	if err := h.checkInstance(edge, m.Instance); err != nil {
		return protocol.MessagesAck{}, err
	}
	h.instances.seen(edge, m.Instance, 0)
	if m.Queue == "" || len(m.Queue) > 256 {
		return protocol.MessagesAck{}, fmt.Errorf("%w: queue name", ErrInvalid)
	}
	var size int64
	for _, msg := range m.Msgs {
		size += int64(len(msg.Body)) + 256 // ids, properties, index entries
	}
	if err := h.admit(size); err != nil {
		return protocol.MessagesAck{}, fmt.Errorf("messages from %q: %w", edge, err)
	}
	cmd, err := appendEvents{Edge: edge, Frame: m}.withDigests()
	if err != nil {
		return protocol.MessagesAck{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	res, err := h.applyResult(ctx, cmd)
	if err != nil {
		return protocol.MessagesAck{}, err
	}
	ack := res.(protocol.MessagesAck)
	h.edges.noteMessages(edge, ack.Appended)
	return ack, nil
}

// Twins merges the edge's twin changes: only twins in its scope, only
// fields its own incarnations wrote or those of an edge below it (a parent
// edge relays its subtree's writes unchanged), each for a twin in the
// scope of the edge that wrote it.
func (h *Hub) Twins(ctx context.Context, edge string, m protocol.TwinsUp) (protocol.TwinsAck, error) {
	if err := h.checkInstance(edge, m.Instance); err != nil {
		return protocol.TwinsAck{}, err
	}
	h.instances.seen(edge, m.Instance, 0)
	inScope, err := h.inScope(edge)
	if err != nil {
		return protocol.TwinsAck{}, err
	}
	t := h.tree()
	batch := twin.Batch{Commits: m.Batch.Commits}
	for _, td := range m.Batch.Twins {
		keep, err := h.admitTwin(t, edge, inScope, td, m.Generations[td.ID])
		if err != nil {
			h.metrics.framesRefused.Add(1)
			return protocol.TwinsAck{}, err
		}
		if keep {
			batch.Twins = append(batch.Twins, td)
		}
	}
	for _, c := range m.Batch.Commits {
		if _, ok := t.writer(edge, c.Origin); !ok {
			h.metrics.framesRefused.Add(1)
			return protocol.TwinsAck{}, fmt.Errorf("%w: commit for %s; an edge commits only its own writes and those of the edges below it", ErrInvalid, c.Origin)
		}
	}
	if err := h.apply(ctx, mergeTwins{Edge: edge, Batch: batch}); errors.Is(err, twin.ErrBadDelta) {
		h.metrics.framesRefused.Add(1)
		return protocol.TwinsAck{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	} else if err != nil {
		return protocol.TwinsAck{}, err // a storage failure: 500, the edge retries
	}
	h.metrics.twinMerges.Add(1)
	h.collectGarbage(ctx)
	return protocol.TwinsAck{TwinVV: h.twins().VV(), Hub: string(h.twins().Replica())}, nil
}

// admitTwin checks one twin of an edge's TwinsUp (gen: the generation it
// was written for, "" when not known): an error refuses the frame; keep
// false drops the twin's fields as written for a deleted generation
// (counted, and acknowledged by the frame's commits so the edge does not
// send them again).
func (h *Hub) admitTwin(t tree, edge string, inScope func(string) bool, td twin.TwinDelta, gen string) (keep bool, err error) {
	writers, err := t.writers(edge, td)
	if err != nil {
		return false, err
	}
	cur, exists, err := h.ids().Get(td.ID)
	switch {
	case err != nil:
		return false, fmt.Errorf("%w: twin %q: %v", ErrInvalid, td.ID, err)
	case exists && !inScope(td.ID):
		return false, fmt.Errorf("%w: twin %q is not in the scope of edge %q", ErrInvalid, td.ID, edge)
	case !exists || gen != "" && gen != cur.Generation:
		// Before the writers' scope: a twin created again elsewhere in
		// the tree does not hold up the writes of its old generation.
		h.metrics.twinsStale.Add(1)
		h.log.Warn("twin delta refused: written for a deleted generation of the identity", "edge", edge, "twin", td.ID,
			"generation", gen, "current_generation", cur.Generation, "fields", len(td.Fields))
		return false, nil
	}
	if w := t.outside(writers, td.ID); w != "" {
		return false, fmt.Errorf("%w: twin %q carries fields written by edge %q, whose scope does not hold it; an edge writes only the twins of its own subtree",
			ErrInvalid, td.ID, w)
	}
	return true, nil
}

// MethodResult takes an edge's answer to a method call.
func (h *Hub) MethodResult(edge string, r protocol.MethodResult) error {
	if !h.edges.result(edge, r) {
		return fmt.Errorf("%w: no method call %q waits for an answer (it may have timed out)", ErrNotFound, r.ID)
	}
	return nil
}

// Pull holds an edge's request until the hub has something for it or the
// wait passes: twin changes in its scope, its identities when they changed,
// cloud-to-device messages and method calls.
func (h *Hub) Pull(ctx context.Context, edge string, p protocol.Pull) (protocol.Push, error) {
	if err := h.checkInstance(edge, p.Instance); err != nil {
		return protocol.Push{}, err
	}
	// Before edges.begin ends a waiting pull of the same instance: a pull that
	// begins while another of its instance waits is counted (two edges
	// sharing the instance id).
	duplicate := h.instances.seen(edge, p.Instance, +1) // closed when a second instance appears: answer now, with protocol.InstancesHeader
	defer func() { h.instances.endPull(edge, p.Instance, ctx.Err() != nil) }()
	// The edge's version vector is its ack for tombstone GC.
	if err := h.apply(ctx, ackPull{Edge: edge, Instance: p.Instance, VV: p.TwinVV, C2D: h.c2dCursors(edge, p)}); err != nil {
		return protocol.Push{}, err
	}
	if err := h.notePresence(ctx, edge, p); err != nil {
		return protocol.Push{}, err
	}
	h.collectGarbage(ctx)
	h.edges.noteBacklog(edge, p.Backlog)
	if len(p.Children) > 0 {
		t := h.tree()
		h.edges.noteChildren(edge, p.Children, func(child string) bool {
			id, ok, _ := t.ids.Get(child)
			return ok && id.Edge && id.ModuleID == "" && t.under(edge, child) // edges of its own tree only
		})
	}
	stop := h.edges.begin(edge, p.Instance)
	defer h.edges.end(edge, p.Instance, stop)
	wait := min(time.Duration(p.WaitMs)*time.Millisecond, h.opts.PullWait)
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		woken := h.woken()
		push, called, err := h.collect(ctx, edge, p)
		if err != nil || !empty(push) || h.closed.Load() {
			return push, err
		}
		select {
		case <-woken:
		case <-called:
		case <-t.C:
			return push, nil
		case <-stop:
			return push, nil
		case <-duplicate:
			return push, nil
		case <-ctx.Done():
			return push, ctx.Err()
		}
	}
}

// empty reports whether p carries nothing (Hub, always set, does not count).
func empty(p protocol.Push) bool {
	return len(p.Twins.Twins) == 0 && len(p.Twins.Commits) == 0 && !p.HasScope && len(p.C2D) == 0 && len(p.Methods) == 0
}

const twinFieldsPerPush = 4096

func (h *Hub) collect(ctx context.Context, edge string, p protocol.Pull) (protocol.Push, <-chan struct{}, error) {
	push := protocol.Push{Hub: string(h.twins().Replica())}
	if p.Hub != push.Hub {
		p.C2D = nil // counted in another hub's sequence numbers
	}
	ids, _, err := h.scope(edge)
	if err != nil {
		return push, nil, err
	}
	scope := idSet(ids)
	wire := protocol.IdentitiesFromStore(ids)
	if d := protocol.ScopeDigest(wire); d != p.Scope {
		push.HasScope, push.Scope, push.Identities = true, d, wire
	}
	push.TwinVV = h.twins().VV() // before the delta: once it is applied, the edge holds all of it
	if push.Twins, push.TwinsMore, err = h.twins().DeltaFor(p.TwinVV, twinFieldsPerPush, func(id string) bool { _, ok := scope[id]; return ok }); err != nil {
		return push, nil, err
	}
	for _, td := range push.Twins.Twins {
		if push.Generations == nil {
			push.Generations = protocol.Generations{}
		}
		push.Generations[td.ID] = scope[td.ID].Generation
	}
	for _, id := range ids {
		if id.ModuleID != "" || id.Edge { // this edge and those below it take no cloud-to-device messages
			continue
		}
		msgs, err := h.c2dFor(id.DeviceID, p.C2D[id.DeviceID])
		if err != nil {
			return push, nil, err
		}
		push.C2D = append(push.C2D, msgs...)
	}
	var called <-chan struct{}
	push.Methods, called = h.edges.takeCalls(edge)
	return push, called, nil
}

func idSet(ids []identity.Identity) map[string]identity.Identity {
	m := make(map[string]identity.Identity, len(ids))
	for _, id := range ids {
		m[id.ID()] = id
	}
	return m
}
