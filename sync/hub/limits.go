package hub

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/sync/protocol"
)

// Request limits of the hub's HTTP handlers; the connection-level ones
// (header deadline, idle keep-alive, header bytes) are the server's
// (cmd/internal/httpserver).
const (
	// DefaultMaxLinkRequests is Options.MaxLinkRequests' default: an edge
	// has its drain, twins and pull loops and a few method answers in
	// flight at once.
	DefaultMaxLinkRequests = 8
	// DefaultRequestDeadline is Options.RequestDeadline's default.
	DefaultRequestDeadline = 30 * time.Second
	// maxRESTBody caps a REST request body (image pushes have their own
	// cap, MaxImageSize); each handler may cap lower.
	maxRESTBody = 1 << 20
	// maxLinkBody caps a link frame as sent (gzip never grows a frame
	// much past its decoded size, protocol.MaxFrame).
	maxLinkBody = protocol.MaxFrame + 1<<20
	// linkRetryAfter is what a busy edge is told to wait, in seconds.
	linkRetryAfter = 1
)

// withDeadline gives every request a deadline to be read and answered
// in. Streams and long polls (events, image transfers, method calls, the
// link) lift it once the caller is authenticated; net/http keeps a write
// deadline from one request to the next on a connection, so every request
// sets its own.
func (h *Hub) withDeadline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setDeadline(w, h.opts.RequestDeadline)
		next.ServeHTTP(w, r)
	})
}

// WithDeadline is withDeadline for handlers served next to Handler's (a
// cluster node's membership endpoints).
func (h *Hub) WithDeadline(next http.Handler) http.Handler { return h.withDeadline(next) }

// setDeadline sets the request's read and write deadline d from now; 0
// lifts it.
func setDeadline(w http.ResponseWriter, d time.Duration) {
	var t time.Time
	if d > 0 {
		t = time.Now().Add(d)
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(t) // not supported by test recorders: nothing to bound there
	_ = rc.SetWriteDeadline(t)
}

// authFailed counts a request refused for authentication and closes its
// connection after the answer: a caller without credentials cannot hold
// a keep-alive connection by repeating requests.
func (h *Hub) authFailed(w http.ResponseWriter) {
	h.metrics.authFailed.Add(1)
	w.Header().Set("Connection", "close")
}

// linkSlots counts the link frames each edge has in flight.
type linkSlots struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

// acquire takes a slot for edge; false when it has max in flight.
func (s *linkSlots) acquire(edge string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[edge] >= s.max {
		return false
	}
	if s.n == nil {
		s.n = map[string]int{}
	}
	s.n[edge]++
	return true
}

func (s *linkSlots) release(edge string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[edge]--; s.n[edge] <= 0 {
		delete(s.n, edge)
	}
}

// linkBusy answers a frame over the edge's limit: 429 with Retry-After,
// which the edge's link waits out and retries.
func (h *Hub) linkBusy(w http.ResponseWriter, edge, path string) {
	h.metrics.linkBusy.Add(1)
	if ok, held := h.busyLog.Allow("link_busy"); ok {
		h.log.Warn("sync frame refused", "reason", "too_many_in_flight", "edge", edge, "path", path,
			"limit", h.opts.MaxLinkRequests, "refused_since_last_logged", held)
	}
	w.Header().Set("Retry-After", strconv.Itoa(linkRetryAfter))
	protocol.WriteError(w, http.StatusTooManyRequests, "TooManyRequests",
		fmt.Sprintf("edge %q has %d link requests in flight, the limit; retry after %d s", edge, h.opts.MaxLinkRequests, linkRetryAfter))
}
