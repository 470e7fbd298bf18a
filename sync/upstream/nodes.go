package upstream

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
)

// The nodes of a hub cluster. The link sends every request to its current
// node; when one fails to get an answer, or is answered 502, 503 or 504,
// the link moves to the next node at once: in-flight requests to the old
// node are cancelled and every loop starts a new session on the new one
// after a short jitter. Frames are safe to send again to another node (the
// hub recognises what it holds by instance and sequence number). The usual
// backoff applies only when every node failed in a row.

// Jitter between the sessions that follow a move to another node: enough
// to spread the edges of a cluster's dead node over the others, short
// enough that the drain resumes within a second.
const (
	switchJitterMin = 50 * time.Millisecond
	switchJitterMax = 350 * time.Millisecond
	// switchLogEvery: at most one line per period about moves between nodes.
	switchLogEvery = 10 * time.Second
	// maxElectionWait is the longest Retry-After of a 503 (a cluster
	// electing its leader) that the retry after every node failed waits out.
	maxElectionWait = 5 * time.Second
	// failedLeaderHold: a leader hint to a node that failed this link less
	// than this long ago is ignored, so that a leader the edge cannot reach
	// (while the other nodes can) does not make the link flap between it
	// and the node that forwards.
	failedLeaderHold = time.Minute
)

// switchError is the failure of a request to a hub node that made the link
// move to another node (or that went to a node the link had left). fresh:
// not every node failed in a row, so the next session starts at once.
type switchError struct {
	err   error
	fresh bool
}

func (e *switchError) Error() string { return e.err.Error() }
func (e *switchError) Unwrap() error { return e.err }

// isFreshSwitch reports whether err made the link move to a node that has
// not failed yet.
func isFreshSwitch(err error) bool {
	var sw *switchError
	return errors.As(err, &sw) && sw.fresh
}

// node returns the link's current node: its index, its base URL and a
// channel closed when the link moves away from it.
func (l *Link) node() (int, string, <-chan struct{}) {
	l.nodeMu.Lock()
	defer l.nodeMu.Unlock()
	return l.cur, l.nodes[l.cur], l.moved
}

// nodeUp records an answer of node i: the nodes that failed in a row are
// forgotten.
func (l *Link) nodeUp(i int) {
	l.nodeMu.Lock()
	defer l.nodeMu.Unlock()
	if i == l.cur {
		l.failedInRow = 0
	}
}

// nodeFailure returns err, made a *switchError when it is a failure of node
// i that warrants another node (ctx is the caller's: a link shutting down
// moves nowhere): the link moves from node i to the next unless it has
// already left it.
func (l *Link) nodeFailure(ctx context.Context, i int, err error) error {
	if err == nil || ctx.Err() != nil || !nodeFailed(err) {
		return err
	}
	l.nodeMu.Lock()
	defer l.nodeMu.Unlock()
	if i != l.cur {
		return &switchError{err: err, fresh: true} // cancelled by the move, or failed at the node left behind
	}
	l.failedAt[i] = time.Now()
	l.failedInRow++
	fresh := l.failedInRow < len(l.nodes)
	if len(l.nodes) == 1 {
		return &switchError{err: err, fresh: false}
	}
	from := l.nodes[l.cur]
	l.cur = (l.cur + 1) % len(l.nodes)
	close(l.moved)
	l.moved = make(chan struct{})
	l.switches.Add(1)
	if ok, held := l.switchLog.Allow("switch"); ok {
		l.log.Warn("link switches to another hub node", "from", from, "to", l.nodes[l.cur], "reason", err.Error(),
			"nodes_failed_in_a_row", l.failedInRow, "switches_not_logged", held)
	}
	return &switchError{err: err, fresh: fresh}
}

// preferLeader moves the link to the node a hub cluster names as its
// leader (protocol.LeaderHeader) when that node is in the link's list and
// the answer came from the current node: the node the link uses forwards
// every request there. Requests in flight finish where they are. A leader
// that failed this link within failedLeaderHold is not moved to.
func (l *Link) preferLeader(i int, leader string) {
	leader = strings.TrimSuffix(leader, "/")
	if leader == "" {
		return
	}
	l.nodeMu.Lock()
	defer l.nodeMu.Unlock()
	if i != l.cur || l.nodes[i] == leader {
		return
	}
	j := slices.Index(l.nodes, leader)
	if j < 0 {
		return // named otherwise in the list (or not in it): stay
	}
	if time.Since(l.failedAt[j]) < failedLeaderHold {
		return // the forward works; the leader did not, for this link
	}
	from := l.nodes[l.cur]
	l.cur, l.failedInRow = j, 0
	l.moved = make(chan struct{}) // the old node's channel is left open: it did not fail
	if ok, held := l.switchLog.Allow("leader"); ok {
		l.log.Info("link moves to the hub cluster's leader", "from", from, "to", leader, "moves_not_logged", held)
	}
}

// nodeFailed reports whether err (of a request to a hub node) says that the
// node is gone or cannot serve now: no answer, or a 502, 503 or 504.
func nodeFailed(err error) bool {
	var he *HubError
	if errors.As(err, &he) {
		switch he.Status {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	return !errors.Is(err, errIgnoredAnswer)
}

// untilMoved returns ctx cancelled also when the link moves away from the
// node whose channel is moved: a long poll to a node the link left must not
// hold the pull loop there.
func untilMoved(ctx context.Context, moved <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-moved:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// afterFailure is how long the retry loop waits after a failed session
// that did not move to a fresh node: the backoff, or a short Retry-After
// of a 503 when that is longer.
func afterFailure(err error, backoff time.Duration) time.Duration {
	var he *HubError
	if errors.As(err, &he) && he.Status == http.StatusServiceUnavailable && he.RetryAfter <= maxElectionWait && he.RetryAfter > backoff {
		return he.RetryAfter
	}
	return backoff
}

func switchJitter() time.Duration {
	return switchJitterMin + rand.N(switchJitterMax-switchJitterMin)
}

// defaultClient is the link's HTTP client when Options.Client is nil. With
// several nodes, a dial timeout and keepalives notice a hub node whose
// machine vanished mid long poll within about 11 s (a node whose process
// died closes its connections at once), so the link moves on. A single
// hub's link keeps Go's defaults, as before clusters: its keepalive every
// 15 s costs a metered link a third of the probes.
func defaultClient(opts Options) *http.Client {
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second,
		TLSClientConfig: tlsConfig(opts)}
	if len(opts.URLs) > 1 {
		d := &net.Dialer{Timeout: 10 * time.Second, KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 5 * time.Second,
			Interval: 2 * time.Second, Count: 3}}
		tr.DialContext, tr.TLSHandshakeTimeout = d.DialContext, 10*time.Second
	}
	return &http.Client{Transport: tr}
}
