package hub

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/sync/protocol"
)

// edges tracks which edges are connected (pulling) and hands direct method
// calls to them. It is in memory: a call in flight when the hub restarts
// fails with a timeout, as on IoT Hub.
type edges struct {
	h  *Hub
	mu sync.Mutex
	m  map[string]*edgeConn
	n  uint64
}

type edgeConn struct {
	pulling  int
	lastSeen time.Time
	stops    map[string]chan struct{} // per instance: closed when a newer pull replaces the current one
	calls    []*call
	inflight map[string]*call
	wake     chan struct{} // closed when a call is queued
	// What the fleet view shows (fleet.go).
	backlog     int64
	backlogAt   time.Time
	messages    int64
	lastMessage time.Time
	// An edge below another (nested edges), as the top edge of its tree
	// reported it with its last pull: via that edge, seen then by its parent.
	via      string
	viaSeen  time.Time
	reportAt time.Time
}

type call struct {
	mc   protocol.MethodCall
	done chan protocol.MethodResult
}

func newEdges(h *Hub) *edges { return &edges{h: h, m: map[string]*edgeConn{}} }

func (e *edges) conn(edge string) *edgeConn {
	c := e.m[edge]
	if c == nil {
		c = &edgeConn{inflight: map[string]*call{}, wake: make(chan struct{}), stops: map[string]chan struct{}{}}
		e.m[edge] = c
	}
	return c
}

// begin registers a pull; an older pull of the same edge instance still
// waiting is ended, so one edge has one pull at a time. Two instances of
// one edge (a data directory copied to another machine) each keep theirs
// instead of ending each other's, request after request.
func (e *edges) begin(edge, instance string) (stop <-chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.conn(edge)
	if old, ok := c.stops[instance]; ok {
		close(old)
	}
	ch := make(chan struct{})
	c.stops[instance] = ch
	c.pulling++
	c.lastSeen = e.h.opts.Now()
	return ch
}

func (e *edges) end(edge, instance string, stop <-chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.conn(edge)
	if c.stops[instance] == stop {
		delete(c.stops, instance)
	}
	c.pulling--
	c.lastSeen = e.h.opts.Now()
}

// online reports whether the edge pulls now or did within the grace.
func (e *edges) online(edge string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.m[edge]
	return c != nil && (c.pulling > 0 || e.h.opts.Now().Sub(c.lastSeen) < e.h.opts.OnlineGrace)
}

// takeCalls moves the queued calls to in flight and returns them, with the
// channel the next queued call closes.
func (e *edges) takeCalls(edge string) ([]protocol.MethodCall, <-chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.conn(edge)
	var out []protocol.MethodCall
	for _, cl := range c.calls {
		c.inflight[cl.mc.ID] = cl
		out = append(out, cl.mc)
	}
	c.calls = nil
	return out, c.wake
}

// result hands an edge's answer to the waiting caller.
func (e *edges) result(edge string, r protocol.MethodResult) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.conn(edge)
	cl := c.inflight[r.ID]
	if cl == nil {
		return false
	}
	delete(c.inflight, r.ID)
	cl.done <- r
	return true
}

// invoke queues a call for the edge and waits for its answer.
func (e *edges) invoke(ctx context.Context, edge string, mc protocol.MethodCall, wait time.Duration) (protocol.MethodResult, error) {
	e.mu.Lock()
	c := e.conn(edge)
	e.n++
	mc.ID = fmt.Sprintf("%d-%d", e.h.opts.Now().UnixNano(), e.n)
	cl := &call{mc: mc, done: make(chan protocol.MethodResult, 1)}
	c.calls = append(c.calls, cl)
	close(c.wake)
	c.wake = make(chan struct{})
	e.mu.Unlock()
	forget := func() {
		e.mu.Lock()
		delete(c.inflight, mc.ID)
		for i, x := range c.calls {
			if x == cl {
				c.calls = append(c.calls[:i], c.calls[i+1:]...)
				break
			}
		}
		e.mu.Unlock()
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case r := <-cl.done:
		return r, nil
	case <-t.C:
		forget()
		return protocol.MethodResult{}, fmt.Errorf("%w: no answer from %s through edge %s within %s", ErrTimeout, mc.Target, edge, wait)
	case <-ctx.Done():
		forget()
		return protocol.MethodResult{}, ctx.Err()
	}
}

// InvokeMethod calls a direct method on a device or module behind an edge.
// It fails at once with ErrOffline when the edge is not connected (or the
// edge says the target is not), and with ErrTimeout when no answer comes.
func (h *Hub) InvokeMethod(ctx context.Context, target string, req protocol.MethodRequest) (int, []byte, error) {
	if _, err := h.edgeOf(target); err != nil {
		return 0, nil, err
	}
	// Below a child edge (nested edges) the call goes to the top edge of
	// the tree, the one that pulls from the hub; each parent hands it down.
	edge, _ := h.tree().top(target)
	if !h.edges.online(edge) {
		return 0, nil, fmt.Errorf("%w: the edge %s of %s is not connected to the hub", ErrOffline, edge, target)
	}
	h.metrics.methodsInvoked.Add(1)
	timeout := req.Timeout()
	mc := protocol.MethodCall{Target: target, Name: req.MethodName, Payload: req.Payload, TimeoutMs: timeout.Milliseconds()}
	// The edge enforces the method's timeout; the extra time covers the link.
	r, err := h.edges.invoke(ctx, edge, mc, timeout+time.Duration(req.ConnectTimeout)*time.Second+5*time.Second)
	if err != nil {
		return 0, nil, err
	}
	switch {
	case r.Error != "" && r.Status == 404:
		return 0, nil, fmt.Errorf("%w: %s", ErrOffline, r.Error)
	case r.Error != "" && r.Status == 504:
		return 0, nil, fmt.Errorf("%w: %s", ErrTimeout, r.Error)
	case r.Error != "":
		return 0, nil, fmt.Errorf("method %s on %s: %s", req.MethodName, target, r.Error)
	}
	return r.Status, r.Payload, nil
}
