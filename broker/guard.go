package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/store/ratelog"
)

// Connection hygiene. Every listener handed to mochi is wrapped so that a
// client which has not authenticated can hold neither a connection nor a
// buffer for long:
//   - a deadline set at accept covers the TLS handshake, the WebSocket
//     upgrade and CONNECT, and mochi cannot push it back (it calls
//     SetDeadline itself, and clears it for keepalive 0);
//   - the first packet must be CONNECT and its fixed header may not announce
//     more than MaxPreAuthBytes: mochi allocates the announced length before
//     any hook runs, so the header is checked before mochi sees it;
//   - connections are capped in total and, while unauthenticated, per remote
//     IP (never once authenticated: modules share 127.0.0.1 and plants sit
//     behind NAT).
//
// Once the client is authenticated (OnConnectAuthenticate), the wrappers are
// a pass-through: one atomic load per Read, no lock, no allocation.

// ConnReason says why a connection was refused or cut before
// authentication; each is counted in Stats.ConnRefusedBy.
type ConnReason uint8

// Reasons for refusing a connection.
const (
	ConnTooMany        ConnReason = iota // the total connection cap was reached
	ConnTooManyPending                   // the remote IP has too many unauthenticated connections
	ConnTimeout                          // no authenticated CONNECT within the pre-authentication deadline
	ConnTooLarge                         // more bytes before authentication than allowed
	ConnNotConnect                       // the first packet was not CONNECT
	NumConnReasons
)

var connReasonNames = [NumConnReasons]string{"too_many", "too_many_pending", "timeout", "too_large", "not_connect"}

// String is the reason's name in status, metrics and logs.
func (r ConnReason) String() string {
	if r < NumConnReasons {
		return connReasonNames[r]
	}
	return "unknown"
}

// Defaults of the connection limits (Options).
const (
	DefaultConnectTimeout   = 10 * time.Second
	DefaultMaxConnections   = 4096
	DefaultMaxPendingPerIP  = 64
	DefaultMaxPreAuthBytes  = 64 << 10
	DefaultMaxSubscriptions = 256
	DefaultMaxInflight      = 1024
)

var (
	errPreAuthTooLarge = errors.New("more bytes before authentication than allowed")
	errNotConnect      = errors.New("the first packet is not CONNECT")
	errBadLength       = errors.New("malformed remaining length in the first packet")
)

// gate admits connections and keeps the counts the caps apply to.
type gate struct {
	timeout    time.Duration
	maxConns   int64
	maxPending int
	maxPreAuth int
	stats      *Stats
	log        *slog.Logger
	rl         ratelog.Limiter

	mu      sync.Mutex
	pending map[string]int // unauthenticated connections by remote IP
	closing bool           // the broker is closing: connections read nothing more
}

func newGate(o Limits, stats *Stats, log *slog.Logger) *gate {
	return &gate{
		timeout: o.ConnectTimeout, maxConns: int64(o.MaxConnections), maxPending: o.MaxPendingPerIP,
		maxPreAuth: o.MaxPreAuthBytes, stats: stats, log: log, pending: map[string]int{},
	}
}

// admit takes a slot for a new connection, or nil when a cap refuses it.
func (g *gate) admit(c net.Conn) *slot {
	ip := remoteIP(c.RemoteAddr())
	if g.stats.Connections.Add(1) > g.maxConns {
		g.stats.Connections.Add(-1)
		g.refuse(ConnTooMany, ip, fmt.Errorf("%d connections are open, the limit (--max-connections)", g.maxConns))
		return nil
	}
	g.mu.Lock()
	n := g.pending[ip]
	if n >= g.maxPending {
		g.mu.Unlock()
		g.stats.Connections.Add(-1)
		g.refuse(ConnTooManyPending, ip, fmt.Errorf("%d connections from this address have not authenticated yet, the limit (--max-pending-per-ip)", n))
		return nil
	}
	g.pending[ip] = n + 1
	g.mu.Unlock()
	return &slot{g: g, ip: ip, raw: c, until: time.Now().Add(g.timeout)}
}

// attached is called at a connection's first read, which mochi makes
// after it counted the client in the wait group Server.Close waits on; the
// lock orders that count before quiesce (and so before the Wait), which the
// race detector otherwise reports (an Add racing a Wait). false: the broker
// is closing, read nothing.
func (g *gate) attached() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.closing
}

// quiesce is called by Broker.Close before mochi's Server.Close: every
// connection that has begun to read is ordered before it, and no other
// begins.
func (g *gate) quiesce() {
	g.mu.Lock()
	g.closing = true
	g.mu.Unlock()
}

func (g *gate) unpend(ip string) {
	g.mu.Lock()
	if g.pending[ip]--; g.pending[ip] <= 0 {
		delete(g.pending, ip)
	}
	g.mu.Unlock()
}

// refuse counts a refused or cut connection and logs it without flooding.
func (g *gate) refuse(r ConnReason, remote string, err error) {
	g.stats.ConnRefused.Add(1)
	g.stats.ConnRefusedBy[r].Add(1)
	if ok, held := g.rl.Allow(r.String()); ok {
		g.log.Warn("connection refused", "reason", r.String(), "remote", remote, "err", err,
			"refused_since_last_logged", held)
	}
}

func remoteIP(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// slot is one admitted connection: its place in the counts and its
// pre-authentication deadline, which it enforces on the raw connection.
type slot struct {
	g        *gate
	ip       string
	raw      net.Conn
	until    time.Time
	authed   atomic.Bool
	released atomic.Bool
	refused  atomic.Bool // cut for a reason already counted

	mu     sync.Mutex // orders deadline changes with authenticate
	rd, wd time.Time  // deadlines asked for before authentication
}

// authenticated lifts the pre-authentication deadline (restoring what the
// server last asked for) and frees the connection's pending place.
func (s *slot) authenticated() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.authed.Load() || s.released.Load() {
		return
	}
	s.authed.Store(true)
	_ = s.raw.SetReadDeadline(s.rd)
	_ = s.raw.SetWriteDeadline(s.wd)
	s.g.unpend(s.ip)
}

func (s *slot) release() {
	if !s.released.CompareAndSwap(false, true) {
		return
	}
	defer s.g.stats.Connections.Add(-1) // after the reason is counted
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.authed.Load() {
		return
	}
	s.g.unpend(s.ip)
	// Counted here rather than where a read times out: the deadline also
	// cuts TLS handshakes and WebSocket upgrades, which mochi never reads.
	if !s.refused.Load() && !time.Now().Before(s.until) {
		s.g.refuse(ConnTimeout, s.ip, fmt.Errorf("not authenticated within %s (--connect-timeout)", s.g.timeout))
	}
}

// refuse counts why the connection is being cut before authentication.
func (s *slot) refuse(r ConnReason, err error) {
	s.refused.Store(true)
	s.g.refuse(r, s.ip, err)
}

// setDeadline applies a deadline asked for by mochi, TLS or HTTP: before
// authentication never later than the pre-authentication one.
func (s *slot) setDeadline(t time.Time, read, write bool) error {
	if s.authed.Load() {
		return setRaw(s.raw, t, read, write)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.authed.Load() {
		if read {
			s.rd = t
		}
		if write {
			s.wd = t
		}
		if t.IsZero() || t.After(s.until) {
			t = s.until
		}
	}
	return setRaw(s.raw, t, read, write)
}

func setRaw(c net.Conn, t time.Time, read, write bool) error {
	switch {
	case read && write:
		return c.SetDeadline(t)
	case read:
		return c.SetReadDeadline(t)
	}
	return c.SetWriteDeadline(t)
}

// slotConn is the raw connection as accepted: deadlines clamped before
// authentication, the slot released on Close. TLS and WebSocket run on it.
type slotConn struct {
	net.Conn
	s *slot
}

func (c *slotConn) SetDeadline(t time.Time) error      { return c.s.setDeadline(t, true, true) }
func (c *slotConn) SetReadDeadline(t time.Time) error  { return c.s.setDeadline(t, true, false) }
func (c *slotConn) SetWriteDeadline(t time.Time) error { return c.s.setDeadline(t, false, true) }

func (c *slotConn) Close() error {
	err := c.Conn.Close()
	c.s.release()
	return err
}

// guardConn is what mochi reads MQTT from (the raw, TLS or WebSocket
// connection): before authentication it counts the bytes and checks the
// first packet's fixed header before handing any byte over.
type guardConn struct {
	net.Conn
	s   *slot
	n   int // bytes read before authentication
	hdr fixedHeader
}

func (c *guardConn) Read(p []byte) (int, error) {
	if c.s.authed.Load() {
		return c.Conn.Read(p)
	}
	return c.readPreAuth(p)
}

func (c *guardConn) readPreAuth(p []byte) (int, error) {
	g := c.s.g
	if c.n == 0 && !g.attached() {
		return 0, net.ErrClosed
	}
	left := g.maxPreAuth - c.n
	if left <= 0 {
		c.s.refuse(ConnTooLarge, fmt.Errorf("%d bytes read before authentication, the limit", c.n))
		return 0, errPreAuthTooLarge
	}
	if len(p) > left {
		p = p[:left]
	}
	n, err := c.Conn.Read(p)
	c.n += n
	if herr := c.hdr.feed(p[:n], g.maxPreAuth); herr != nil {
		reason := ConnTooLarge
		if errors.Is(herr, errNotConnect) || errors.Is(herr, errBadLength) {
			reason = ConnNotConnect
		}
		c.s.refuse(reason, herr)
		return 0, herr
	}
	return n, err
}

func (c *guardConn) Close() error {
	err := c.Conn.Close()
	c.s.release()
	return err
}

// tlsState is the TLS state of a connection mochi holds, nil without TLS.
func tlsState(c net.Conn) *tls.ConnectionState {
	if g, ok := c.(*guardConn); ok {
		c = g.Conn
	}
	if tc, ok := c.(*tls.Conn); ok {
		st := tc.ConnectionState()
		return &st
	}
	return nil
}

// fixedHeader follows the first packet's fixed header as its bytes arrive.
type fixedHeader struct {
	n      int // header bytes seen
	length int
	mult   int
	done   bool
}

// feed checks the header bytes in b: the packet must be CONNECT and its
// whole length at most max.
func (h *fixedHeader) feed(b []byte, max int) error {
	for _, x := range b {
		if h.done {
			return nil
		}
		h.n++
		if h.n == 1 {
			if x>>4 != packets.Connect {
				return fmt.Errorf("%w (packet type %d)", errNotConnect, x>>4)
			}
			h.mult = 1
			continue
		}
		h.length += int(x&0x7f) * h.mult
		h.mult *= 128
		if h.n+h.length > max {
			return fmt.Errorf("%w: CONNECT announces %d bytes, the limit is %d", errPreAuthTooLarge, h.n+h.length, max)
		}
		if x&0x80 == 0 {
			h.done = true
		} else if h.n == 5 {
			return errBadLength
		}
	}
	return nil
}

// guardListener wraps a listener handed to mochi: admission at accept,
// TLS (when set) on the guarded raw connection.
type guardListener struct {
	net.Listener
	g   *gate
	tls *tls.Config
	raw bool // hand out the raw slotConn (WebSocket: guarded after the upgrade)
}

func (l *guardListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		s := l.g.admit(c)
		if s == nil {
			_ = c.Close()
			continue
		}
		_ = c.SetDeadline(s.until)
		var sc net.Conn = &slotConn{Conn: c, s: s}
		if l.raw {
			return sc, nil
		}
		if l.tls != nil {
			sc = tls.Server(sc, l.tls)
		}
		return &guardConn{Conn: sc, s: s}, nil
	}
}

// guardUpgraded guards a WebSocket connection whose raw connection came
// from a guardListener; nil when it did not.
func guardUpgraded(c net.Conn, under net.Conn) net.Conn {
	if tc, ok := under.(*tls.Conn); ok {
		under = tc.NetConn()
	}
	sc, ok := under.(*slotConn)
	if !ok {
		return c
	}
	// http.Server cleared its header deadline: put the pre-auth one back.
	_ = sc.SetDeadline(time.Time{})
	return &guardConn{Conn: c, s: sc.s}
}
