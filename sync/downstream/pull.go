package downstream

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// pull takes the child's ack (its version vector) and report, and answers
// what it lacks of its subtree (collect) as soon as there is something:
// held until the identities or the twins change, a C2D message or a method
// call comes, or the wait passes.
func (s *Server) pull(ctx context.Context, child string, p protocol.Pull) (protocol.Push, error) {
	if err := checkInstance(child, p.Instance); err != nil {
		return protocol.Push{}, err
	}
	below := s.below(child, p.Children)
	s.seen(child, p.Instance, func(c *Child) { c.Backlog, c.Below = p.Backlog, below })
	s.notePresence(child, p.Presence, p.PresenceFull)
	wait := min(time.Duration(p.WaitMs)*time.Millisecond, s.opts.PullWait)
	t := time.NewTimer(wait)
	defer t.Stop()
	if err := s.ackChild(ctx, child, p); err != nil {
		return protocol.Push{}, err
	}
	for {
		s.mu.Lock()
		changed, wake := s.changed, s.wake
		s.mu.Unlock()
		var twinsChanged <-chan struct{}
		if s.opts.Twins != nil {
			twinsChanged = s.opts.Twins.Changed()
		}
		push, err := s.collect(child, p)
		if err != nil || push.HasScope || len(push.Twins.Twins) > 0 || len(push.Twins.Commits) > 0 || len(push.C2D) > 0 || len(push.Methods) > 0 {
			return push, err
		}
		select {
		case <-changed:
		case <-twinsChanged:
		case <-wake:
		case <-t.C:
			return push, nil
		case <-ctx.Done():
			return protocol.Push{}, ctx.Err()
		}
	}
}

// below keeps of what a child reports of the edges below it one entry per
// edge of its own subtree, with the parent this edge knows (never the
// child's word): the report is passed up with every pull of this edge.
func (s *Server) below(child string, reported []protocol.ChildStatus) []protocol.ChildStatus {
	var out []protocol.ChildStatus
	seen := map[string]bool{}
	now := s.opts.Now().UnixMilli()
	for _, c := range reported {
		id, ok, _ := s.opts.Identities.Get(c.Edge)
		if !ok || !id.Edge || id.ModuleID != "" || seen[c.Edge] || c.Edge == child || !s.inSubtree(child, c.Edge) {
			continue
		}
		seen[c.Edge] = true
		c.Parent, c.LastSeen = s.parentOf(id), min(c.LastSeen, now)
		out = append(out, c)
	}
	return out
}

// twinFieldsPerPush bounds the twin fields of one answer (as the hub's).
const twinFieldsPerPush = 4096

// collect is what a child lacks: its subtree's identities when its digest
// differs, the C2D messages and method calls waiting here for its subtree,
// and the fields of its subtree's twins its version vector lacks.
func (s *Server) collect(child string, p protocol.Pull) (protocol.Push, error) {
	push := protocol.Push{Hub: s.opts.Replica}
	sub, err := s.subtree(child) // listed once for the identities and the C2D below
	if err != nil {
		return push, err
	}
	wire := protocol.IdentitiesFromStore(sub)
	if d := protocol.ScopeDigest(wire); d != p.Scope {
		push.HasScope, push.Scope, push.Identities = true, d, wire
	}
	if push.C2D, err = s.c2d(sub, p.C2D, p.Hub == s.opts.Replica); err != nil {
		return push, err
	}
	push.Methods = s.takeCalls(child)
	if s.opts.Twins == nil {
		return push, nil
	}
	push.TwinVV = s.opts.Twins.VV() // before the delta: once applied, the child holds all of it
	if push.Twins, push.TwinsMore, err = s.opts.Twins.DeltaFor(p.TwinVV, twinFieldsPerPush, func(id string) bool { return s.inSubtree(child, id) }); err != nil {
		return push, err
	}
	for _, td := range push.Twins.Twins {
		if id, ok, _ := s.opts.Identities.Get(td.ID); ok {
			if push.Generations == nil {
				push.Generations = protocol.Generations{}
			}
			push.Generations[td.ID] = id.Generation
		}
	}
	return push, nil
}

// c2dBatch bounds the cloud-to-device messages per device in one answer.
const c2dBatch = 100

// C2DQueue is where the edge keeps the cloud-to-device messages of a device
// (as its broker does): for a device below a child edge they wait here
// until the child has stored them.
func C2DQueue(device string) string { return "c2d/" + device + "/p0" }

// C2DAppended wakes the children's pulls: a cloud-to-device message was
// queued here (the edge's link took it from the hub).
func (s *Server) C2DAppended() {
	s.mu.Lock()
	s.wakeLocked()
	s.mu.Unlock()
}

func (s *Server) wakeLocked() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// c2d returns the cloud-to-device messages waiting here for the leaf
// devices of a child's subtree (sub), past the child's cursors; what the child
// says it stored (cursors, counted in this edge's queue sequence numbers
// when mine is set) is removed first.
func (s *Server) c2d(sub []identity.Identity, cursors map[string]uint64, mine bool) ([]protocol.C2D, error) {
	var out []protocol.C2D
	for _, id := range sub {
		if id.ModuleID != "" || id.Edge {
			continue
		}
		q, ok := s.opts.Queues.Lookup(C2DQueue(id.DeviceID))
		if !ok {
			continue
		}
		cur := uint64(0)
		if mine {
			cur = cursors[id.DeviceID]
		}
		msgs, err := s.c2dFor(q, cur)
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			out = append(out, protocol.C2D{Device: id.DeviceID, Seq: m.Seq, ID: m.ID, Props: m.Props, Sys: m.Sys, Body: m.Body,
				EnqueuedAt: m.EnqueuedAt.UnixMilli()})
		}
	}
	return out, nil
}

// c2dFor removes what a child stored (up to cur) from q and returns what
// follows. It leases from the oldest message every time: a push lost on
// the way is sent again, and the child's cursor skips what it has.
func (s *Server) c2dFor(q *queue.Queue, cur uint64) ([]queue.Message, error) {
	l := s.lock(cursorKey{queue: q.Name()})
	l.Lock()
	defer l.Unlock()
	q.Rewind()
	for {
		msgs, err := q.Lease(c2dBatch, protocol.MaxC2D*4)
		if err != nil {
			return nil, err
		}
		done := uint64(0)
		for len(msgs) > 0 && msgs[0].Seq <= cur {
			done = msgs[0].Seq
			msgs = msgs[1:]
		}
		if done > 0 {
			if err := q.Ack(context.Background(), done); err != nil {
				return nil, err
			}
		}
		if len(msgs) > 0 || done == 0 {
			return msgs, nil
		}
	}
}

// subtree lists the identities of a child edge's subtree.
func (s *Server) subtree(child string) ([]identity.Identity, error) {
	all, err := s.opts.Identities.List()
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(id identity.Identity) bool { return !s.inSubtree(child, id.ID()) }), nil
}

// call is a direct method for a device or module below a child edge.
type call struct {
	child  string
	mc     protocol.MethodCall
	handed bool
	res    chan protocol.MethodResult
}

// Invoke hands a direct method for target, below child, to the child's
// next pull and waits for its answer: 404 when the child did not take it
// in time (it is not connected), 504 when it took it and did not answer.
func (s *Server) Invoke(ctx context.Context, child, target, name string, payload []byte, timeout time.Duration) protocol.MethodResult {
	c := &call{child: child, mc: protocol.MethodCall{ID: queue.NewID(), Target: target, Name: name, Payload: payload, TimeoutMs: timeout.Milliseconds()},
		res: make(chan protocol.MethodResult, 1)}
	s.mu.Lock()
	s.calls[child] = append(s.calls[child], c)
	s.waiting[c.mc.ID] = c
	s.wakeLocked()
	s.mu.Unlock()
	t := time.NewTimer(timeout + min(timeout, 5*time.Second)) // the child answers 504 itself after timeout
	defer t.Stop()
	select {
	case r := <-c.res:
		return r
	case <-t.C:
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.waiting, c.mc.ID)
	s.calls[child] = slices.DeleteFunc(s.calls[child], func(x *call) bool { return x == c })
	if !c.handed {
		return protocol.MethodResult{Status: 404, Error: fmt.Sprintf("child edge %q, which %s is below, is not connected to edge %q", child, target, s.opts.Edge)}
	}
	return protocol.MethodResult{Status: 504, Error: fmt.Sprintf("child edge %q did not answer the call for %s in time", child, target)}
}

// takeCalls hands the calls waiting for a child to its pull.
func (s *Server) takeCalls(child string) []protocol.MethodCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []protocol.MethodCall
	for _, c := range s.calls[child] {
		c.handed = true
		out = append(out, c.mc)
	}
	delete(s.calls, child)
	return out
}

// methodResult takes a child's answer to a call it was handed.
// presence takes a child's report of what changed of the clients
// connected below it.
func (s *Server) presence(_ context.Context, child string, r protocol.PresenceReport) (struct{}, error) {
	if err := checkInstance(child, r.Instance); err != nil {
		return struct{}{}, err
	}
	s.notePresence(child, r.Presence, false)
	return struct{}{}, nil
}

// notePresence records a child's report of its clients (full: every
// client connected below it, the others are gone). Identities outside the
// child's subtree are not its to report and are dropped; the edge's own
// uplink then reports the rest to the hub with its own clients
// (ChildClients).
func (s *Server) notePresence(child string, ps []protocol.Presence, full bool) {
	if len(ps) == 0 && !full {
		return
	}
	keep := make([]protocol.Presence, 0, len(ps))
	for _, p := range ps {
		if s.inSubtree(child, p.ID) {
			keep = append(keep, p)
		}
	}
	s.mu.Lock()
	m := s.clients[child]
	if m == nil || full {
		m = map[string]protocol.Presence{}
		s.clients[child] = m
	}
	for _, p := range keep {
		if p.Connected {
			m[p.ID] = p
		} else {
			delete(m, p.ID)
		}
	}
	s.mu.Unlock()
	if s.opts.OnPresence != nil {
		s.opts.OnPresence()
	}
}

// ChildClients lists the clients connected below this edge's children, as
// they last reported them, by id.
func (s *Server) ChildClients() []protocol.Presence {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []protocol.Presence
	for _, m := range s.clients {
		for _, p := range m {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b protocol.Presence) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func (s *Server) methodResult(_ context.Context, child string, r protocol.MethodResult) (struct{}, error) {
	s.mu.Lock()
	c := s.waiting[r.ID]
	if c != nil && c.child == child {
		delete(s.waiting, r.ID)
	} else {
		c = nil // another child's call is not this one's to answer
	}
	s.mu.Unlock()
	if c == nil {
		return struct{}{}, &statusError{http.StatusNotFound, "NotFound", fmt.Errorf("no method call %q waits for an answer (it may have timed out)", r.ID)}
	}
	c.res <- r
	return struct{}{}, nil
}
