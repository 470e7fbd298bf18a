package hub

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/sync/protocol"
)

// DefaultDuplicateWindow: an instance counts as live this long after its
// last link request. An edge pulls at least every 25 s.
const DefaultDuplicateWindow = 2 * time.Minute

// maxInstances bounds what the hub remembers of one edge's instances.
const maxInstances = 16

// instances tracks, per edge identity, the instances that use the link,
// to find two live at once. In memory: a restarted hub learns again
// within one pull.
type instances struct {
	h  *Hub
	mu sync.Mutex
	m  map[string]*edgeInstances
}

type edgeInstances struct {
	seen      map[string]*instanceSeen
	duplicate bool          // two live instances overlap (logged, counted)
	logged    time.Time     // the last WARN about it
	wake      chan struct{} // closed when a new duplicate is found: pulls answer at once
}

type instanceSeen struct {
	first, last time.Time
	pulling     int
	left        bool        // its last pull ended because the edge went away (stopped, killed): not live
	clashes     []time.Time // pulls that began while another pull of this instance waited, within the window
}

// sameInstanceClashes: this many pulls of one instance that began while
// another of its pulls waited, within the window, are two edges sharing
// the instance id (a copy of a data directory on the same machine id). One
// edge pulls one at a time; a connection lost mid-pull makes one clash.
const sameInstanceClashes = 3

// InstanceStatus is one instance of an edge as the hub sees it.
type InstanceStatus struct {
	Instance  string    `json:"instance"`
	FirstSeen time.Time `json:"firstSeen"`
	LastSeen  time.Time `json:"lastSeen"`
	Pulling   bool      `json:"pulling"`
	// Shared: two edges pull under this one instance id.
	Shared bool `json:"shared"`
}

func newInstances(h *Hub) *instances { return &instances{h: h, m: map[string]*edgeInstances{}} }

// seen records a link request of an instance; pulling is +1 when a pull
// starts, -1 when it ends, 0 for other requests. It returns the channel
// closed when a new duplicate of the edge is found.
func (in *instances) seen(edge, instance string, pulling int) <-chan struct{} {
	in.mu.Lock()
	defer in.mu.Unlock()
	now := in.h.opts.Now()
	e := in.m[edge]
	if e == nil {
		e = &edgeInstances{seen: map[string]*instanceSeen{}, wake: make(chan struct{})}
		in.m[edge] = e
	}
	s := e.seen[instance]
	if s == nil {
		in.prune(e, now)
		s = &instanceSeen{first: now}
		e.seen[instance] = s
	}
	if pulling > 0 && s.pulling > 0 {
		s.clashes = append(in.recent(s.clashes, now), now)
	}
	s.last, s.pulling, s.left = now, max(0, s.pulling+pulling), false
	in.check(edge, e, now)
	return e.wake
}

// recent drops the times older than the window.
func (in *instances) recent(ts []time.Time, now time.Time) []time.Time {
	for len(ts) > 0 && now.Sub(ts[0]) >= in.h.opts.DuplicateWindow {
		ts = ts[1:]
	}
	return ts
}

// shared reports whether two edges pull under this one instance id.
func (in *instances) shared(s *instanceSeen, now time.Time) bool {
	return len(in.recent(s.clashes, now)) >= sameInstanceClashes
}

// endPull records the end of a pull; gone: the edge went away during it
// (its request was cancelled: it stopped or was killed, the connection
// closed), so the instance is no longer live.
func (in *instances) endPull(edge, instance string, gone bool) {
	in.seen(edge, instance, -1)
	if !gone {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if e := in.m[edge]; e != nil {
		if s := e.seen[instance]; s != nil && s.pulling == 0 {
			s.left = true
			in.check(edge, e, in.h.opts.Now())
		}
	}
}

// prune forgets instances that are not live, and the oldest beyond
// maxInstances.
func (in *instances) prune(e *edgeInstances, now time.Time) {
	for id, s := range e.seen {
		if !in.live(s, now) {
			delete(e.seen, id)
		}
	}
	for len(e.seen) >= maxInstances {
		var oldest string
		for id, s := range e.seen {
			if oldest == "" || s.last.Before(e.seen[oldest].last) {
				oldest = id
			}
		}
		delete(e.seen, oldest)
	}
}

func (in *instances) live(s *instanceSeen, now time.Time) bool {
	return s.pulling > 0 || !s.left && now.Sub(s.last) < in.h.opts.DuplicateWindow
}

// lastActive is when the instance was last active: now while it pulls.
func lastActive(s *instanceSeen, now time.Time) time.Time {
	if s.pulling > 0 {
		return now
	}
	return s.last
}

// overlap: both were active after the other was first seen. An edge whose
// data directory was wiped and started again (a new instance) does not
// overlap its old self; two gateways running side by side do.
func overlap(a, b *instanceSeen, now time.Time) bool {
	return !lastActive(a, now).Before(b.first) && !lastActive(b, now).Before(a.first)
}

// others returns the live instances of edge, other than instance, that
// overlap it, and instance itself when two edges share it. For an
// instance unknown here (edge check's Hello) it returns those active
// within one pull wait: the instances that run now.
func (in *instances) others(edge, instance string) []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	e := in.m[edge]
	if e == nil {
		return nil
	}
	now := in.h.opts.Now()
	self := e.seen[instance]
	var out []string
	for id, s := range e.seen {
		recent := s.pulling > 0 || !s.left && now.Sub(s.last) < in.h.opts.PullWait
		if id != instance && in.live(s, now) && (self == nil && recent || self != nil && overlap(self, s, now)) || in.shared(s, now) && in.live(s, now) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// check updates the duplicate state of an edge (under mu): a new
// duplicate is counted, logged and wakes the edge's pulls; while it lasts
// the WARN is repeated every 5 minutes.
func (in *instances) check(edge string, e *edgeInstances, now time.Time) {
	var pair []string
	for id, s := range e.seen {
		if in.shared(s, now) && in.live(s, now) {
			pair = []string{id, id}
		}
		for id2, s2 := range e.seen {
			if id < id2 && in.live(s, now) && in.live(s2, now) && overlap(s, s2, now) {
				pair = []string{id, id2}
			}
		}
	}
	switch {
	case pair == nil && e.duplicate:
		e.duplicate = false
		in.h.log.Info("only one instance of the edge is live again", "edge", edge)
	case pair != nil && !e.duplicate:
		e.duplicate = true
		in.h.metrics.duplicateInstances.Add(1)
		close(e.wake)
		e.wake = make(chan struct{})
		fallthrough
	case pair != nil && now.Sub(e.logged) >= 5*time.Minute:
		e.logged = now
		if pair[0] == pair[1] {
			in.h.log.Warn("two edges pull under one instance id (a copy of a data directory on the same machine id): "+
				"give the copy its own machine id (--machine-id-file) or a fresh data directory, and its own device identity",
				"edge", edge, "instance", pair[0])
			return
		}
		in.h.log.Warn("two edges use one edge identity at once (another gateway with the same connection string, or a copy of the data directory): "+
			"give each gateway its own device identity (outpost device create ID --edge), or stop one",
			"edge", edge, "instance", pair[0], "other_instance", pair[1], "live_instances", len(e.seen))
	}
}

// EdgeInstances returns the instances of an edge the hub has seen on the
// link within the duplicate window, and whether two of them were live at
// once (the fleet view's duplicate flag).
func (h *Hub) EdgeInstances(edge string) (list []InstanceStatus, duplicate bool) {
	in := h.instances
	in.mu.Lock()
	defer in.mu.Unlock()
	e := in.m[edge]
	if e == nil {
		return nil, false
	}
	now := h.opts.Now()
	shared := false
	for id, s := range e.seen {
		if in.live(s, now) {
			st := InstanceStatus{Instance: id, FirstSeen: s.first, LastSeen: lastActive(s, now), Pulling: s.pulling > 0, Shared: in.shared(s, now)}
			shared = shared || st.Shared
			list = append(list, st)
		}
	}
	slices.SortFunc(list, func(a, b InstanceStatus) int { return strings.Compare(a.Instance, b.Instance) })
	return list, e.duplicate && (len(list) > 1 || shared)
}

// setInstancesHeader names, on an answer to edge's instance, the other
// live instances of the same edge.
func (h *Hub) setInstancesHeader(w http.ResponseWriter, edge, instance string) {
	if others := h.instances.others(edge, instance); len(others) > 0 {
		w.Header().Set(protocol.InstancesHeader, strings.Join(others, ","))
	}
}

// frameInstance is the instance a link frame names ("" for none).
func frameInstance(frame any) string {
	switch f := frame.(type) {
	case protocol.Hello:
		return f.Instance
	case protocol.Messages:
		return f.Instance
	case protocol.TwinsUp:
		return f.Instance
	case protocol.Pull:
		return f.Instance
	}
	return ""
}
