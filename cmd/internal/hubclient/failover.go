package hubclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Failover between the nodes of a hub cluster.
const (
	// dialTimeout bounds a connection attempt to one node of a list: a
	// node whose machine is gone must not hold the command for 30 s.
	dialTimeout = 5 * time.Second
	// maxRetryAfter is the longest Retry-After (a cluster electing its
	// leader) waited out before one more round over the nodes.
	maxRetryAfter = 5 * time.Second
	// electionWait bounds the rounds a request makes while the cluster has
	// no leader (503 NoLeader: applied nowhere, safe to send again).
	electionWait = 15 * time.Second
)

// nodeTransport is the transport of a Client with several nodes: a short
// dial timeout, and keepalives that notice a vanished node within seconds.
func nodeTransport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	d := &net.Dialer{Timeout: dialTimeout, KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 5 * time.Second,
		Interval: 2 * time.Second, Count: 3}}
	tr.DialContext = d.DialContext
	return tr
}

// nodes returns the bases of the client's nodes, the one that answered
// last (or the random first) first.
func (c *Client) nodes() []string {
	urls := c.URLs
	if len(urls) == 0 {
		return []string{c.URL}
	}
	start := 0
	if c.cur != nil {
		start = int(c.cur.Load()) % len(urls)
	}
	return append(urls[start:len(urls):len(urls)], urls[:start]...)
}

// answered makes the node at base the first to try from now on.
func (c *Client) answered(base string) {
	for i, u := range c.URLs {
		if u == base && c.cur != nil {
			c.cur.Store(int32(i))
		}
	}
}

// roundTrip sends r to the nodes in turn until one answers. A node that
// could not be reached, or answered 502, 503 or 504, is passed over for
// the next: always for a GET, HEAD, OPTIONS or DELETE, and for any other
// method only when the connection failed before anything was written (a
// dial error) or the cluster said it applied nothing (503 NoLeader), so a
// write is never applied twice. When every node failed and one asked to
// retry after at most maxRetryAfter (an election), the nodes are tried once
// more after that wait; while every answer is 503 NoLeader, for up to
// electionWait, one node included.
func (c *Client) roundTrip(ctx context.Context, r Request) ([]byte, error) {
	nodes := c.nodes()
	var tries []nodeTry
	start := time.Now()
	for round := 0; ; round++ {
		for _, base := range nodes {
			data, err := c.tryNode(ctx, r, base)
			if err == nil {
				c.answered(base)
				return data, nil
			}
			tries = append(tries, nodeTry{base, err})
			if ctx.Err() != nil || !nextNode(r.Method, err) {
				return nil, failed(r, tries)
			}
		}
		last := tries[len(tries)-len(nodes):]
		wait := shortRetryAfter(last)
		electing := allNoLeader(last) && time.Since(start)+wait < electionWait
		if wait == 0 || !electing && (len(nodes) == 1 || round > 0) {
			return nil, failed(r, tries)
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// noLeader reports whether err is a 503 NoLeader: the cluster applied
// nothing of the request.
func noLeader(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable && ae.Code == "NoLeader"
}

func allNoLeader(tries []nodeTry) bool {
	for _, t := range tries {
		if !noLeader(t.err) {
			return false
		}
	}
	return len(tries) > 0
}

// nextNode reports whether a request with method that failed with err may
// be sent to another node.
func nextNode(method string, err error) bool {
	if !Retryable(err) {
		return false
	}
	return idempotent(method) || dialError(err) || noLeader(err)
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodDelete:
		return true
	}
	return false
}

// dialError reports whether err is a failure to connect: nothing of the
// request was written.
func dialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// shortRetryAfter is the shortest Retry-After of up to maxRetryAfter among
// the answers of tries, 0 when none asked for one.
func shortRetryAfter(tries []nodeTry) time.Duration {
	var wait time.Duration
	for _, t := range tries {
		var ae *APIError
		if errors.As(t.err, &ae) && ae.RetryAfter > 0 && ae.RetryAfter <= maxRetryAfter && (wait == 0 || ae.RetryAfter < wait) {
			wait = ae.RetryAfter
		}
	}
	return wait
}

// retryAfter reads a Retry-After in seconds; 0 when absent or malformed.
func retryAfter(h http.Header) time.Duration {
	n, err := strconv.Atoi(h.Get("Retry-After"))
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}

// failed is the error of a request after tries: the last error as it is
// when one node was tried or the last one answered, else every node tried
// and why. A write that failed after it may have reached a node says so,
// and so does a DELETE that a node answered 404 after it may have reached
// an earlier one.
func failed(r Request, tries []nodeTry) error {
	last := tries[len(tries)-1].err
	if r.Method == http.MethodDelete && StatusOf(last) == http.StatusNotFound {
		for _, t := range tries[:len(tries)-1] {
			if errors.Is(t.err, ErrUnreachable) && !dialError(t.err) {
				// Sent again as a read would be: the first may have deleted it.
				return fmt.Errorf("%w (the connection to %s broke after the request may have reached it: it was probably deleted there)", last, t.url)
			}
		}
	}
	var ae *APIError
	if errors.Is(last, context.Canceled) || errors.Is(last, context.DeadlineExceeded) || errors.As(last, &ae) && !Retryable(last) {
		return last
	}
	var err error = last
	if len(tries) > 1 {
		err = &nodesError{tries: tries}
	}
	if !idempotent(r.Method) && errors.Is(last, ErrUnreachable) && !dialError(last) {
		err = &maybeAppliedError{method: r.Method, path: pathOnly(r.Path), err: err}
	}
	return err
}

type nodeTry struct {
	url string
	err error
}

// nodesError is a request that no node of a hub cluster answered.
type nodesError struct{ tries []nodeTry }

func (e *nodesError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "no hub node answered (%d tried): ", len(e.tries))
	for i, t := range e.tries {
		if i > 0 {
			b.WriteString("; ")
		}
		why := t.err.Error()
		var ue *unreachableError
		if errors.As(t.err, &ue) {
			why = ue.err.Error()
		}
		fmt.Fprintf(&b, "%s: %s", t.url, why)
	}
	fmt.Fprintf(&b, " (are the hub's nodes running? set --hub-url or %s to their URLs, comma-separated)", EnvURL)
	return b.String()
}

func (e *nodesError) Unwrap() []error {
	errs := make([]error, len(e.tries))
	for i, t := range e.tries {
		errs[i] = t.err
	}
	return errs
}

// maybeAppliedError is a write whose connection broke after the request
// may have reached a node: it is not sent again, to any node.
type maybeAppliedError struct {
	method, path string
	err          error
}

func (e *maybeAppliedError) Error() string {
	return fmt.Sprintf("%s %s: %v; the hub may have applied it before the connection broke, so it was not sent again: check its effect before repeating the command",
		e.method, e.path, e.err)
}

func (e *maybeAppliedError) Unwrap() error { return e.err }
