package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/sync/protocol"
)

// A clustered hub (Options.Clustered) applies every command through a
// replicated log: the leader proposes, every node's FSM applies. The
// servers run on every node, but only the leader answers: a follower
// forwards a request to the leader's API (Forward), which authenticates
// it (a follower's copy of the registry may lag the leader's by a moment),
// so an answer never depends on the node asked, and the in-memory parts
// of the link (long polls, method calls waiting for their edge, instance
// tracking) live on one node, the leader. A leader confirms it still
// leads (VerifyLeader) before it answers a read or any REST request. Link
// frames (POST, pulls included) skip that round trip: what a deposed leader
// might still answer there is at worst an older cursor or C2D batch, which
// the edge sends again or the hub's state de-duplicates.

// Cluster is the replicated log under a clustered hub: a sync/cluster
// node, adapted by cmd/internal/hub.
type Cluster interface {
	// ID is this node's id.
	ID() string
	// Apply replicates an encoded command and returns the FSM's answer
	// (a Result) once this node applied it; ErrNotLeader on a follower.
	Apply(ctx context.Context, entry []byte) (any, error)
	// VerifyLeader confirms with a majority that this node still leads.
	VerifyLeader(ctx context.Context) error
	IsLeader() bool
	// LeaderID is the leader's id as this node knows it ("" during an
	// election).
	LeaderID() string
}

// Metric is a gauge a cluster node adds to /metrics.
type Metric struct {
	Name, Help string
	Value      float64
}

// ErrNotLeader: this node cannot take the request now (no leader known,
// or leadership moved); the caller retries, on any node (503).
var ErrNotLeader = errors.New("not the cluster's leader")

// ForwardedHeader marks a request a follower forwarded (with its node id):
// it is forwarded once, never again.
const ForwardedHeader = "Outpost-Forwarded-By"

// SetCluster starts applying commands through c. Until it is called, a
// clustered hub proposes nothing (ErrNotLeader).
func (h *Hub) SetCluster(c Cluster) { h.cluster.Store(&c) }

func (h *Hub) clusterNode() Cluster {
	if p := h.cluster.Load(); p != nil {
		return *p
	}
	return nil
}

// proposeCluster replicates entry and unwraps the FSM's answer.
func (h *Hub) proposeCluster(ctx context.Context, entry []byte) (any, error) {
	c := h.clusterNode()
	if c == nil {
		return nil, fmt.Errorf("%w: the node is still starting", ErrNotLeader)
	}
	v, err := c.Apply(ctx, entry)
	if err != nil {
		return nil, err
	}
	r, ok := v.(Result)
	if !ok {
		return nil, fmt.Errorf("replicated log answered %T, not the hub's Result", v)
	}
	if r.Skipped {
		// Never acknowledge what did not apply: the state's applied index
		// is ahead of this log (a state from another cluster).
		return nil, errors.New("the state machine skipped a new entry: its applied index is ahead of the raft log (was this data directory's store/ copied from another cluster? see docs/operations.md, Backing up)")
	}
	return r.Value, r.Err
}

// leads reports whether this node proposes commands: always for a single
// hub; for a clustered one, while it is the leader.
func (h *Hub) leads() bool {
	if !h.opts.Clustered {
		return true
	}
	c := h.clusterNode()
	return c != nil && c.IsLeader()
}

// caughtUp reports whether this node's state includes everything the
// cluster committed: always for a single hub; for a clustered one, what
// its replicated log says (a node that cannot tell has not).
func (h *Hub) caughtUp() bool {
	if !h.opts.Clustered {
		return true
	}
	c, ok := h.clusterNode().(interface{ CaughtUp() bool })
	return ok && c.CaughtUp()
}

// ForwardOptions configure Forward.
type ForwardOptions struct {
	// Local reports the requests this node answers itself (its health,
	// metrics, its own status).
	Local func(r *http.Request) bool
	// Transport reaches the other nodes' APIs (their TLS trust).
	Transport http.RoundTripper
	// Self is this node's API base URL: the leader names it on its answers
	// to link requests (protocol.LeaderHeader), so edges that list it go
	// there instead of through a follower.
	Self string
}

// Forward serves next on the leader and forwards everything else to it
// (see Cluster). A single hub serves next unchanged.
func (h *Hub) Forward(next http.Handler, o ForwardOptions) http.Handler {
	if !h.opts.Clustered {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (o.Local != nil && o.Local(r)) || h.imageLocal(r) {
			next.ServeHTTP(w, r)
			return
		}
		c := h.clusterNode()
		if c != nil && c.IsLeader() {
			if o.Self != "" && strings.HasPrefix(r.URL.Path, protocol.PathPrefix) {
				w.Header().Set(protocol.LeaderHeader, o.Self)
			}
			h.serveLeader(next, w, r, c)
			return
		}
		h.forward(w, r, c, o)
	})
}

// serveLeader answers on the leader. A read, and any REST request (whose
// answer may come from the state before a command is proposed, as a 404),
// first confirms leadership; link frames need not: they only propose.
func (h *Hub) serveLeader(next http.Handler, w http.ResponseWriter, r *http.Request, c Cluster) {
	if r.Method == http.MethodGet || !strings.HasPrefix(r.URL.Path, protocol.PathPrefix) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		err := c.VerifyLeader(ctx)
		cancel()
		if err != nil {
			noLeader(w, fmt.Sprintf("this node could not confirm it leads the cluster (%v): retry", err))
			return
		}
	}
	next.ServeHTTP(w, r)
}

func (h *Hub) forward(w http.ResponseWriter, r *http.Request, c Cluster, o ForwardOptions) {
	// The request is not authenticated here: the leader does it, with the
	// registry as it is, and bounds the request with its own deadlines.
	if r.Header.Get(ForwardedHeader) != "" {
		noLeader(w, "leadership moved while the request was forwarded: retry")
		return
	}
	target, err := h.leaderURL(c)
	if err != nil {
		noLeader(w, err.Error())
		return
	}
	setDeadline(w, 0) // the leader bounds the request; streams pass through
	id := c.ID()
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Set(ForwardedHeader, id)
		},
		FlushInterval: -1, // long polls and event streams pass through as written
		Transport:     o.Transport,
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode == http.StatusUnauthorized {
				// As the leader does: a caller without credentials keeps
				// no connection open.
				resp.Header.Set("Connection", "close")
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if ok, n := h.forwardLog.Allow("forward"); ok {
				h.log.Warn("forward to the leader failed", "path", r.URL.Path, "leader", target.Host, "err", err, "not_logged", n)
			}
			unavailable(w, fmt.Sprintf("the leader did not answer (%v): retry", err))
		},
	}
	proxy.ServeHTTP(w, r)
}

// leaderURL is the leader's API base URL from the node records.
func (h *Hub) leaderURL(c Cluster) (*url.URL, error) {
	if c == nil {
		return nil, errors.New("this node is still starting: retry")
	}
	id := c.LeaderID()
	switch id {
	case "":
		return nil, errors.New("no leader is elected yet: retry in a second")
	case c.ID():
		// Raft names this node, yet it could not confirm its leadership
		// (its barrier failed): answer here rather than forward to itself.
		return nil, errors.New("this node is taking over as leader: retry in a second")
	}
	nodes, err := h.fsm.Nodes()
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		if n.ID == id {
			return url.Parse(n.API)
		}
	}
	return nil, fmt.Errorf("the leader %q has not published its API address yet: retry", id)
}

// unavailable answers 503 NotLeader with a short Retry-After: any node
// will do on the retry. The request may have been applied (it reached a
// leader that lost its place, or the forward broke after sending it).
func unavailable(w http.ResponseWriter, msg string) {
	w.Header().Set("Retry-After", "1")
	protocol.WriteError(w, http.StatusServiceUnavailable, "NotLeader", msg)
}

// noLeader answers 503 NoLeader: the request was applied nowhere (no leader
// is known, or this node could not confirm it leads before handling it),
// so a client may send it again, writes included, after Retry-After.
func noLeader(w http.ResponseWriter, msg string) {
	w.Header().Set("Retry-After", "1")
	protocol.WriteError(w, http.StatusServiceUnavailable, "NoLeader", msg)
}
