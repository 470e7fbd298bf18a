package hub

import (
	"slices"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/sync/protocol"
)

// EdgeStatus is what the hub knows of an edge device from its link.
type EdgeStatus struct {
	DeviceID string `json:"deviceId"`
	Status   string `json:"status"` // enabled or disabled (the registry's)
	// Online: it pulls now or did within the online grace.
	Online bool `json:"online"`
	// Instances pulling now: more than one is one identity used by two
	// edges (a copied data directory).
	Instances int `json:"instances"`
	// LastSeen is the end of its last pull (zero: not since the hub started).
	LastSeen time.Time `json:"lastSeen"`
	// Backlog is the number of messages its $upstream queues held at its
	// last pull (BacklogAt: when; zero: unknown).
	Backlog   int64     `json:"backlog"`
	BacklogAt time.Time `json:"backlogAt"`
	// Messages stored from it since the hub started, and when the last
	// batch came.
	Messages    int64     `json:"messages"`
	LastMessage time.Time `json:"lastMessage"`
	// DuplicateInstance: two live instances use this identity (EdgeInstances).
	DuplicateInstance bool `json:"duplicateInstance"`
	// Parent is the edge it links to (nested edges), "" for an edge that
	// links to the hub; Via is the top edge of its tree that last reported
	// it (its LastSeen and Backlog are then as its parent saw them).
	Parent string `json:"parent,omitempty"`
	Via    string `json:"via,omitempty"`
}

// Edges lists the edge devices of the registry with what their link told
// the hub since it started, in id order.
func (h *Hub) Edges() []EdgeStatus {
	var out []EdgeStatus
	t := h.tree()
	for _, id := range h.Devices() {
		if id.Edge {
			out = append(out, EdgeStatus{DeviceID: id.DeviceID, Status: string(id.Status), Parent: t.parent(id)})
		}
	}
	h.linkState(out)
	for i := range out {
		_, out[i].DuplicateInstance = h.EdgeInstances(out[i].DeviceID)
	}
	slices.SortFunc(out, func(a, b EdgeStatus) int { return strings.Compare(a.DeviceID, b.DeviceID) })
	return out
}

// linkState fills in what the edges' links told the hub.
func (h *Hub) linkState(out []EdgeStatus) {
	now := h.opts.Now()
	h.edges.mu.Lock()
	defer h.edges.mu.Unlock()
	for i := range out {
		c := h.edges.m[out[i].DeviceID]
		if c == nil {
			continue
		}
		e := &out[i]
		e.Online = c.pulling > 0 || now.Sub(c.lastSeen) < h.opts.OnlineGrace
		e.Instances, e.LastSeen = len(c.stops), c.lastSeen
		e.Backlog, e.BacklogAt = c.backlog, c.backlogAt
		e.Messages, e.LastMessage = c.messages, c.lastMessage
		if e.Parent != "" && c.via != "" {
			// Below another edge: online while its tree's top edge reports it
			// fresh (seen by its parent within the grace, a pull's wait apart).
			e.Via, e.LastSeen, e.BacklogAt = c.via, c.viaSeen, c.reportAt
			e.Online = now.Sub(c.reportAt) < h.opts.OnlineGrace+h.opts.PullWait && c.reportAt.Sub(c.viaSeen) < h.opts.OnlineGrace+h.opts.PullWait
		}
	}
}

// noteChildren records what the top edge of a tree reported of the edges
// below it; only edges in its subtree are taken.
func (e *edges) noteChildren(edge string, children []protocol.ChildStatus, under func(string) bool) {
	now := e.h.opts.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ch := range children {
		if ch.Edge == edge || !under(ch.Edge) {
			continue
		}
		c := e.conn(ch.Edge)
		c.via, c.viaSeen, c.reportAt, c.backlog = edge, time.UnixMilli(min(ch.LastSeen, now.UnixMilli())), now, ch.Backlog
	}
}

// noteBacklog records the backlog an edge reported with a pull.
func (e *edges) noteBacklog(edge string, n int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.conn(edge)
	c.backlog, c.backlogAt = n, e.h.opts.Now()
}

// noteMessages records a batch of n messages stored from an edge.
func (e *edges) noteMessages(edge string, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.conn(edge)
	c.messages += int64(n)
	c.lastMessage = e.h.opts.Now()
}

// EventsChanged returns a channel closed when events after the call are
// stored (for live views; take it before reading).
func (h *Hub) EventsChanged() <-chan struct{} { return h.events().wait() }
