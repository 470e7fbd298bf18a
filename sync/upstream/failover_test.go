package upstream

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/store/ratelog"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// node is one node of a stand-in hub cluster: its own listener (real TCP on
// 127.0.0.1) in front of the test's one hub, which it can lose.
type node struct {
	srv    *httptest.Server
	frames atomic.Int64                             // messages frames served
	first  atomic.Int64                             // when the first messages frame came (UnixNano)
	hook   atomic.Pointer[func(*http.Request) bool] // true: the request was dealt with
	hung   atomic.Int64                             // requests held by hang
}

func newNode(t *testing.T, e *env) *node {
	t.Helper()
	n := &node{}
	n.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := n.hook.Load(); h != nil && (*h)(r) {
			return
		}
		if r.URL.Path == protocol.PathMessages {
			n.first.CompareAndSwap(0, time.Now().UnixNano())
			n.frames.Add(1)
		}
		e.hub.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(func() { n.srv.Listener.Close(); n.srv.CloseClientConnections() })
	return n
}

// lose stops the node as a crash would: its listener closes and every open
// connection is reset.
func (n *node) lose() {
	n.srv.Listener.Close()
	n.srv.CloseClientConnections()
}

// hang makes the node hold every new request without an answer until the
// client gives up, as a node whose machine vanished.
func (n *node) hang() {
	f := func(r *http.Request) bool {
		n.hung.Add(1)
		<-r.Context().Done()
		return true
	}
	n.hook.Store(&f)
}

// clusterEnv is a link to the env's hub through two nodes, a and b, a
// first; opts adjusts the link's options.
func clusterEnv(t *testing.T, opts func(*Options)) (*env, *node, *node) {
	t.Helper()
	var a, b *node
	e := newEnvWith(t, func(e *env) {
		a, b = newNode(t, e), newNode(t, e)
		o := Options{URLs: []string{a.srv.URL, b.srv.URL}, Edge: e.edgeCS, DB: e.db, Queues: e.queues, Twins: e.twins,
			Identities: e.ids, Target: e.rec, PullWait: time.Second, BatchMessages: 50,
			// A first move that waited for the backoff would show.
			BackoffMin: 5 * time.Second, BackoffMax: 10 * time.Second}
		if opts != nil {
			opts(&o)
		}
		var err error
		if e.link, err = New(o); err != nil {
			t.Fatal(err)
		}
	})
	return e, a, b
}

func appendMessages(t *testing.T, e *env, from, n int) {
	t.Helper()
	q, err := e.queues.Queue("$upstream/pdefault", queue.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := from; i < from+n; i += 100 {
		batch := make([]queue.Message, 0, 100)
		for j := i; j < min(i+100, from+n); j++ {
			batch = append(batch, queue.Message{ID: fmt.Sprintf("m%d", j), Source: "devices/dev1", Body: []byte(fmt.Sprint(j))})
		}
		if _, err := q.Append(e.ctx, batch...); err != nil {
			t.Fatal(err)
		}
	}
}

// The node the link drains through dies mid-drain, after the hub stored a
// frame but before its answer: the link drains through the other node
// within a second or two, and every message is at the hub exactly once.
func TestLinkMovesToAnotherNodeMidDrain(t *testing.T) {
	const total = 5000
	e, a, b := clusterEnv(t, nil)
	var lostAt atomic.Int64
	die := func(r *http.Request) bool {
		if r.URL.Path != protocol.PathMessages || a.frames.Load() < 5 {
			return false
		}
		// The hub stores the frame; the answer never leaves the node.
		e.hub.Handler().ServeHTTP(httptest.NewRecorder(), r)
		lostAt.Store(time.Now().UnixNano())
		a.lose()
		panic(http.ErrAbortHandler)
	}
	a.hook.Store(&die)
	appendMessages(t, e, 0, total)

	eventually(t, "the drain through b", func() bool { return b.first.Load() != 0 })
	if took := time.Duration(b.first.Load() - lostAt.Load()); took > 2*time.Second {
		t.Errorf("the first frame reached node b %s after node a died, want within 2 s", took)
	}
	q, _ := e.queues.Queue("$upstream/pdefault", queue.QueueOptions{})
	eventually(t, "the whole backlog drained", func() bool { return q.Stats().Depth == 0 })
	evs := readEvents(t, e)
	if len(evs) != total {
		t.Fatalf("%d events at the hub, want %d (one frame was stored through a and sent again through b)", len(evs), total)
	}
	for i, ev := range evs {
		if ev.MessageID != fmt.Sprintf("m%d", i) {
			t.Fatalf("event %d is %s, want m%d", i, ev.MessageID, i)
		}
	}
	st := e.link.Status()
	if st.HubURL != b.srv.URL || st.HubSwitches < 1 || st.State != "online" {
		t.Fatalf("status: hub %s, %d switches, %s; want %s, ≥ 1, online", st.HubURL, st.HubSwitches, st.State, b.srv.URL)
	}
}

// A node that stops answering (its machine vanished: no reset, no answer)
// holds the pull's long poll; when the drain's request to it times out the
// link moves and the long poll in flight there ends with it, so what the
// hub sends next arrives through the other node within seconds, not after
// the long poll's 21 s.
func TestLinkLeavesAHungNodeWithItsLongPoll(t *testing.T) {
	e, a, b := clusterEnv(t, func(o *Options) {
		o.PullWait, o.RequestTimeout = 20*time.Second, 1500*time.Millisecond
	})
	eventually(t, "the link online through a", func() bool {
		st := e.link.Status()
		return st.State == "online" && st.HubURL == a.srv.URL
	})
	a.hang()
	// The pull in flight ends within the hub's 2 s; the next one hangs at a.
	eventually(t, "a long poll held by a", func() bool { return a.hung.Load() > 0 })

	appendMessages(t, e, 0, 10)
	start := time.Now()
	if _, err := e.hub.SendC2D(e.ctx, "dev1", queue.Message{ID: "c1", Body: []byte("hi")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the c2d through b", func() bool { e.rec.mu.Lock(); defer e.rec.mu.Unlock(); return len(e.rec.c2d) == 1 })
	if took := time.Since(start); took > 6*time.Second {
		t.Errorf("the c2d message arrived %s after it was sent, want within 6 s", took)
	}
	q, _ := e.queues.Queue("$upstream/pdefault", queue.QueueOptions{})
	eventually(t, "the drain through b", func() bool { return q.Stats().Depth == 0 })
	if b.frames.Load() == 0 || e.link.Status().HubURL != b.srv.URL {
		t.Fatalf("b served %d frames, the link uses %s: want the drain through b", b.frames.Load(), e.link.Status().HubURL)
	}
}

// Every node down: the link does not spin between them, it backs off.
func TestLinkBacksOffWhenEveryNodeFails(t *testing.T) {
	e, a, b := clusterEnv(t, func(o *Options) { o.BackoffMin, o.BackoffMax = 2*time.Second, 2*time.Second })
	eventually(t, "the link online", func() bool { return e.link.Status().State == "online" })
	a.lose()
	b.lose()
	eventually(t, "the link offline", func() bool { return e.link.Status().State == "offline" })
	n0, start := e.link.Status().HubSwitches, time.Now()
	eventually(t, "six more moves", func() bool { return e.link.Status().HubSwitches >= n0+6 })
	// Three loops over two dead nodes, each waiting 1–2 s once both failed:
	// six moves take a backoff at least; moving on after a jitter alone
	// (at most 350 ms) would make them in well under a second.
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Fatalf("six moves between two dead nodes in %s with a 2 s backoff: the link spins", took)
	}
}

func TestNodeFailed(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&HubError{Status: http.StatusServiceUnavailable, Code: "NotLeader"}, true},
		{&HubError{Status: http.StatusBadGateway}, true},
		{&HubError{Status: http.StatusGatewayTimeout}, true},
		{&HubError{Status: http.StatusUnauthorized}, false},
		{&HubError{Status: http.StatusTooManyRequests}, false},
		{&HubError{Status: http.StatusBadRequest}, false},
		{fmt.Errorf("post: %w", errors.New("connection refused")), true},
		{fmt.Errorf("%w: bogus ack", errIgnoredAnswer), false},
	}
	for _, tt := range tests {
		if got := nodeFailed(tt.err); got != tt.want {
			t.Errorf("nodeFailed(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestAfterFailureHonoursAShortRetryAfter(t *testing.T) {
	election := &HubError{Status: http.StatusServiceUnavailable, RetryAfter: 3 * time.Second}
	tests := []struct {
		err     error
		backoff time.Duration
		want    time.Duration
	}{
		{&switchError{err: election}, time.Second, 3 * time.Second},
		{election, 4 * time.Second, 4 * time.Second},
		{&HubError{Status: http.StatusServiceUnavailable, RetryAfter: 30 * time.Second}, time.Second, time.Second}, // too long: the backoff
		{&HubError{Status: http.StatusBadGateway, RetryAfter: 3 * time.Second}, time.Second, time.Second},
		{errors.New("connection refused"), time.Second, time.Second},
	}
	for _, tt := range tests {
		if got := afterFailure(tt.err, tt.backoff); got != tt.want {
			t.Errorf("afterFailure(%v, %s) = %s, want %s", tt.err, tt.backoff, got, tt.want)
		}
	}
}

// A leader the edge cannot reach, while the node it moved to forwards to
// it: the leader hint does not take the link back to it until
// failedLeaderHold has passed, so the link does not flap between them.
func TestLeaderHintIgnoredAfterLeaderFailed(t *testing.T) {
	nodes := []string{"http://a", "http://b", "http://c"}
	l := &Link{nodes: nodes, moved: make(chan struct{}), failedAt: make([]time.Time, len(nodes)),
		log: slog.New(slog.DiscardHandler), switchLog: ratelog.Limiter{Every: switchLogEvery}}
	l.preferLeader(0, "http://b/")
	if i, _, _ := l.node(); i != 1 {
		t.Fatalf("after a hint to b the link uses node %d, want 1", i)
	}
	if err := l.nodeFailure(t.Context(), 1, errors.New("connection refused")); !isFreshSwitch(err) {
		t.Fatalf("failure of b: %v, want a fresh switch", err)
	}
	l.preferLeader(2, "http://b")
	if i, _, _ := l.node(); i != 2 {
		t.Fatalf("a hint to b, which just failed, moved the link to node %d; want it to stay at 2", i)
	}
	l.failedAt[1] = time.Now().Add(-failedLeaderHold)
	l.preferLeader(2, "http://b")
	if i, _, _ := l.node(); i != 1 {
		t.Fatalf("a hint to b that failed %s ago left the link at node %d, want 1", failedLeaderHold, i)
	}
}

// A single hub's link keeps Go's dialer (keepalive every 15 s, as before
// clusters); a cluster's link dials with a timeout and probes sooner.
func TestDefaultClientTunedOnlyForACluster(t *testing.T) {
	one := defaultClient(Options{URLs: []string{"https://hub"}}).Transport.(*http.Transport)
	if one.DialContext != nil || one.TLSHandshakeTimeout != 0 {
		t.Error("a single hub's transport has a tuned dialer")
	}
	two := defaultClient(Options{URLs: []string{"https://a", "https://b"}}).Transport.(*http.Transport)
	if two.DialContext == nil || two.TLSHandshakeTimeout == 0 {
		t.Error("a cluster's transport has Go's default dialer")
	}
}
