package edge

import (
	"sync"
	"time"

	"github.com/outpost-edge/outpost/sync/protocol"
)

// presenceActivityStep is how far a client's last activity moves before
// the edge tells the hub again: lastActivityTime is coarse, as on IoT Hub,
// and costs the hub a state-machine write.
const presenceActivityStep = time.Minute

// presenceClient is one connected client as the tracker sees it: the
// broker's (Count: packets seen, activity is when it last moved) or one
// below a child edge (Activity as the child reported it).
type presenceClient struct {
	ID       string
	Since    int64 // unix ms
	Count    int64
	Activity int64 // unix ms; 0: from Count
}

// presence tracks the broker's clients (and those below child edges) for
// the hub's connectionState and lastActivityTime: each pull reports what
// changed since the last report the hub answered (every connected client
// on a link's first pull).
type presence struct {
	clients func() []presenceClient
	now     func() time.Time

	mu sync.Mutex
	m  map[string]*presenceState
	// changed is signalled when a client connected or disconnected.
	changed chan struct{}
}

type presenceState struct {
	since, activity     int64 // observed: connected since, last activity (unix ms)
	count               int64 // packets seen, to notice activity
	sentSince, sentActv int64 // as the hub last acknowledged them
	gone                bool  // disconnected, not yet acknowledged
}

func newPresence(clients func() []presenceClient, now func() time.Time) *presence {
	return &presence{clients: clients, now: now, m: map[string]*presenceState{}, changed: make(chan struct{}, 1)}
}

// kick signals a change of the connected clients (the broker's OnClients).
func (p *presence) kick() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// report returns the changes to send with a pull (full: every connected
// client, the hub disconnects the others of the edge's scope) and the
// function that records them as delivered once the hub answered.
func (p *presence) report(full bool) ([]protocol.Presence, func()) {
	now := p.now().UnixMilli()
	cur := p.clients()
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := make(map[string]bool, len(cur))
	var out []protocol.Presence
	for _, c := range cur {
		seen[c.ID] = true
		s := p.m[c.ID]
		switch {
		case s == nil || s.since != c.Since || s.gone:
			s = &presenceState{since: c.Since, activity: max(c.Since, c.Activity), count: c.Count}
			p.m[c.ID] = s
		case c.Activity != 0:
			s.activity = max(s.activity, c.Activity)
		case c.Count != s.count:
			s.count, s.activity = c.Count, now
		}
		if full || s.sentSince != s.since || s.activity-s.sentActv >= presenceActivityStep.Milliseconds() {
			out = append(out, protocol.Presence{ID: c.ID, Connected: true, Since: s.since, Activity: s.activity})
		}
	}
	for id, s := range p.m {
		if seen[id] {
			continue
		}
		if !s.gone {
			s.gone, s.activity = true, now
		}
		if !full {
			out = append(out, protocol.Presence{ID: id, Since: s.activity})
		}
	}
	return out, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, r := range out {
			s := p.m[r.ID]
			if s == nil {
				continue
			}
			if r.Connected {
				s.sentSince, s.sentActv = r.Since, r.Activity
			}
		}
		for id, s := range p.m {
			if s.gone && (full || sent(out, id)) {
				delete(p.m, id)
			}
		}
	}
}

func sent(out []protocol.Presence, id string) bool {
	for _, r := range out {
		if r.ID == id {
			return true
		}
	}
	return false
}

// clientsChanged is the broker's OnClients: the uplink, if any, tells the
// hub.
func (e *edge) clientsChanged() {
	if e.presence != nil {
		e.presence.kick()
	}
}
