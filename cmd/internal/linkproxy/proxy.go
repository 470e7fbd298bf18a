package linkproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by a Proxy.
var (
	ErrClosed    = errors.New("link proxy closed")
	ErrFlapRange = errors.New("bad flap durations")
)

const (
	chunkSize   = 32 << 10 // read buffer per direction of a connection
	queueLen    = 256      // chunks in flight per direction of a connection: 8 MiB at most
	minPiece    = 512      // smallest throttled write
	dialTimeout = 10 * time.Second
)

// Options configure a Proxy.
type Options struct {
	Logger *slog.Logger // nil discards
}

// Stats counts what a Proxy did since Open. Bytes are counted before they
// are written, so a peer never sees more than Stats reports.
type Stats struct {
	Conns     int64 // connections accepted, whether forwarded or not
	Cuts      int64 // times the link went down (Cut while up or blackholed)
	BytesUp   int64 // bytes forwarded from clients to the target
	BytesDown int64 // bytes forwarded from the target to clients
}

type state int

const (
	up state = iota
	cut
	blackhole
)

// Proxy forwards the TCP connections it accepts to a target, with faults.
type Proxy struct {
	ln     net.Listener
	target string
	log    *slog.Logger
	done   chan struct{} // closed by Close
	wg     sync.WaitGroup

	delay              atomic.Int64 // time.Duration added to each chunk
	upRate, downRate   bucket
	conns, cuts        atomic.Int64
	bytesUp, bytesDown atomic.Int64

	flapMu sync.Mutex // serialises StartFlap, StopFlap and Close
	flap   *flapper   // guarded by flapMu

	mu     sync.Mutex // guards the fields below
	state  state
	closed bool
	links  map[*link]struct{}
}

// link is one client connection and, once dialled, its target connection.
type link struct {
	client   net.Conn
	server   net.Conn // nil until dialled; guarded by Proxy.mu
	ctx      context.Context
	cancel   context.CancelFunc // called under Proxy.mu when the link dies
	frozen   chan struct{}      // closed when the link is blackholed
	isFrozen bool               // guarded by Proxy.mu
}

// chunk is what one read returned, and when it may be written.
type chunk struct {
	data []byte
	due  time.Time
}

// Open listens on listen (host:port, port 0 for any) and forwards every
// connection it accepts to target (host:port), which is dialled per
// connection and need not be up yet.
func Open(listen, target string, opts Options) (*Proxy, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("open link proxy on %s: %w", listen, err)
	}
	p := &Proxy{
		ln: ln, target: target, done: make(chan struct{}), links: map[*link]struct{}{},
		log: log.With("listen", ln.Addr().String(), "target", target),
	}
	p.wg.Go(p.accept)
	return p, nil
}

// Addr is the address clients connect to.
func (p *Proxy) Addr() net.Addr { return p.ln.Addr() }

// Close stops flapping, closes the listener, resets every connection and
// waits for every goroutine the proxy started. Closing twice is a no-op.
func (p *Proxy) Close() error {
	p.flapMu.Lock()
	p.stopFlapLocked()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.flapMu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	err := p.ln.Close()
	p.killAllLocked()
	p.mu.Unlock()
	p.flapMu.Unlock()
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("close link proxy %s: %w", p.ln.Addr(), err)
	}
	return nil
}

// Cut takes the link down: open connections are reset on both sides and
// new ones are reset as soon as they are accepted.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.state == cut {
		return
	}
	p.state = cut
	p.cuts.Add(1)
	p.log.Info("link cut", "conns", len(p.links))
	p.killAllLocked()
}

// Blackhole makes the link silent: connections stay open but no byte
// moves, and new connections are accepted but not forwarded.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.state == blackhole {
		return
	}
	p.state = blackhole
	p.log.Info("link blackholed", "conns", len(p.links))
	for l := range p.links {
		l.freezeLocked()
	}
}

// Restore brings the link back after Cut or Blackhole. Connections that
// lived through a blackhole are reset and the bytes they held dropped.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.state == up {
		return
	}
	if p.state == blackhole {
		p.killAllLocked() // every link here is frozen
	}
	p.state = up
	p.log.Info("link restored")
}

// Down reports whether the link is cut or blackholed.
func (p *Proxy) Down() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state != up
}

// SetDelay sets the one-way latency added to bytes read from now on, in
// each direction; 0 (or less) removes it.
func (p *Proxy) SetDelay(d time.Duration) { p.delay.Store(int64(max(d, 0))) }

// SetRate limits each direction to bytesPerSecond, shared by all the
// connections going that way; 0 (or less) removes the limit.
func (p *Proxy) SetRate(bytesPerSecond int64) {
	r := max(bytesPerSecond, 0)
	p.upRate.set(r)
	p.downRate.set(r)
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	return Stats{
		Conns: p.conns.Load(), Cuts: p.cuts.Load(),
		BytesUp: p.bytesUp.Load(), BytesDown: p.bytesDown.Load(),
	}
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			select {
			case <-p.done:
				return
			case <-time.After(10 * time.Millisecond): // e.g. out of file descriptors
				p.log.Warn("accept", "err", err)
				continue
			}
		}
		p.conns.Add(1)
		p.admit(c)
	}
}

// admit handles a new connection according to the state of the link.
func (p *Proxy) admit(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.state == cut {
		reset(c)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &link{client: c, ctx: ctx, cancel: cancel, frozen: make(chan struct{})}
	p.links[l] = struct{}{}
	if p.state == blackhole {
		l.freezeLocked() // held, without goroutines, until Restore, Cut or Close
		return
	}
	p.wg.Go(func() { p.forward(l) })
}

// forward dials the target and moves bytes both ways until both directions
// end or the link is killed.
func (p *Proxy) forward(l *link) {
	defer p.drop(l)
	d := net.Dialer{Timeout: dialTimeout}
	s, err := d.DialContext(l.ctx, "tcp", p.target)
	if err != nil {
		p.log.Debug("dial target", "err", err)
		p.kill(l)
		return
	}
	if !p.attach(l, s) {
		return
	}
	upQ, downQ := make(chan chunk, queueLen), make(chan chunk, queueLen)
	var g sync.WaitGroup
	g.Go(func() { p.read(l, l.client, upQ) })
	g.Go(func() { p.write(l, s, upQ, &p.upRate, &p.bytesUp) })
	g.Go(func() { p.read(l, s, downQ) })
	g.Go(func() { p.write(l, l.client, downQ, &p.downRate, &p.bytesDown) })
	g.Wait()
}

// attach records the target connection, unless the link died while it was
// being dialled.
func (p *Proxy) attach(l *link, s net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l.ctx.Err() != nil {
		reset(s)
		return false
	}
	l.server = s
	return true
}

// read moves what src sends into q, stamped with when it may be written.
// It closes q when src ends; any other error kills the link.
func (p *Proxy) read(l *link, src net.Conn, q chan<- chunk) {
	defer close(q)
	buf := make([]byte, chunkSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			c := chunk{data: bytes.Clone(buf[:n]), due: time.Now().Add(time.Duration(p.delay.Load()))}
			select {
			case q <- c:
			case <-l.ctx.Done():
				return
			}
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			p.kill(l)
			return
		}
	}
}

// write sends q's chunks to dst when due, paced by b, and half-closes dst
// after the last one. A write error kills the link.
func (p *Proxy) write(l *link, dst net.Conn, q <-chan chunk, b *bucket, count *atomic.Int64) {
	for c := range q {
		if l.sleep(time.Until(c.due), nil) == dead {
			return
		}
		for data := c.data; len(data) > 0; {
			n, ok := l.pace(b, len(data))
			if !ok {
				return
			}
			count.Add(int64(n))
			w, err := dst.Write(data[:n])
			if err != nil {
				count.Add(int64(w - n))
				p.kill(l)
				return
			}
			data = data[n:]
		}
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok && l.sleep(0, nil) != dead {
		_ = cw.CloseWrite()
	}
}

// drop forgets a link whose forwarding ended and closes its connections.
func (p *Proxy) drop(l *link) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.links, l)
	l.cancel()
	_ = l.client.Close()
	if l.server != nil {
		_ = l.server.Close()
	}
}

func (p *Proxy) kill(l *link) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.killLocked(l)
}

// killLocked resets both connections of l, which wakes its goroutines.
func (p *Proxy) killLocked(l *link) {
	delete(p.links, l)
	l.cancel()
	reset(l.client)
	if l.server != nil {
		reset(l.server)
	}
}

func (p *Proxy) killAllLocked() {
	for l := range p.links {
		p.killLocked(l)
	}
}

// reset closes c with an RST rather than a FIN: that is how a dead link
// looks to a peer that is still sending, and it fails reads at once.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func (l *link) freezeLocked() {
	if !l.isFrozen {
		l.isFrozen = true
		close(l.frozen)
	}
}

type wakeup int

const (
	elapsed wakeup = iota
	woken          // the wake channel was closed
	dead           // the link was killed
)

// sleep waits for d or until wake is closed. A frozen link never wakes up
// again: it sleeps until it is killed.
func (l *link) sleep(d time.Duration, wake <-chan struct{}) wakeup {
	var timer <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	for {
		select {
		case <-l.frozen:
			<-l.ctx.Done()
			return dead
		case <-l.ctx.Done():
			return dead
		default:
		}
		if timer == nil {
			return elapsed
		}
		select {
		case <-timer:
			timer = nil
		case <-wake:
			return woken
		case <-l.frozen:
		case <-l.ctx.Done():
		}
	}
}

// pace waits until b lets the first bytes of n through and returns how
// many may be written now; false once the link is dead.
func (l *link) pace(b *bucket, n int) (int, bool) {
	for {
		k, d, changed := b.take(n, time.Now())
		switch l.sleep(d, changed) {
		case dead:
			return 0, false
		case woken: // the rate changed: the reservation is void
			continue
		}
		return k, true
	}
}

// bucket is a token bucket, in bytes, for one direction of the link.
// Writers reserve ahead (the balance goes negative) and sleep off the debt,
// so connections sharing a bucket share its rate fairly.
type bucket struct {
	mu      sync.Mutex
	rate    int64 // bytes per second; 0 = unlimited
	tokens  float64
	last    time.Time
	changed chan struct{} // closed and replaced when the rate changes
}

func (b *bucket) set(rate int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rate, b.tokens, b.last = rate, 0, time.Time{}
	if b.changed != nil {
		close(b.changed)
	}
	b.changed = make(chan struct{})
}

// take reserves up to n bytes at now. It returns how many to write, how
// long to wait first, and a channel closed if the rate changes meanwhile.
func (b *bucket) take(n int, now time.Time) (int, time.Duration, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rate <= 0 {
		return n, 0, b.changed
	}
	piece := pieceSize(b.rate)
	n = min(n, piece)
	if now.After(b.last) {
		if !b.last.IsZero() {
			b.tokens = min(b.tokens+now.Sub(b.last).Seconds()*float64(b.rate), float64(piece))
		}
		b.last = now
	}
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return n, 0, b.changed
	}
	return n, time.Duration(-b.tokens / float64(b.rate) * float64(time.Second)), b.changed
}

// pieceSize is the largest write at rate: fifty writes a second keep the
// pacing smooth without a syscall per handful of bytes.
func pieceSize(rate int64) int {
	return int(min(max(rate/50, minPiece), chunkSize))
}

// flapper is a running StartFlap.
type flapper struct {
	stop chan struct{}
	done chan struct{}
}

// StartFlap alternates Cut, for a random time in [minDown, maxDown], and
// Restore, for a random time in [minUp, maxUp], until StopFlap or Close.
// It cuts at once. seed makes the sequence of durations reproducible. A
// flap already running is replaced.
func (p *Proxy) StartFlap(minDown, maxDown, minUp, maxUp time.Duration, seed int64) error {
	if minDown < 0 || minUp < 0 || maxDown < minDown || maxUp < minUp || maxDown == 0 || maxUp == 0 {
		return fmt.Errorf("flap link %s: %w: down %v..%v, up %v..%v", p.ln.Addr(), ErrFlapRange, minDown, maxDown, minUp, maxUp)
	}
	p.flapMu.Lock()
	defer p.flapMu.Unlock()
	p.stopFlapLocked()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	f := &flapper{stop: make(chan struct{}), done: make(chan struct{})}
	r := rand.New(rand.NewPCG(uint64(seed), 0))
	p.wg.Go(func() {
		defer close(f.done)
		for {
			p.Cut()
			if !f.sleep(between(r, minDown, maxDown)) {
				return
			}
			p.Restore()
			if !f.sleep(between(r, minUp, maxUp)) {
				return
			}
		}
	})
	p.flap = f
	return nil
}

// StopFlap stops flapping and restores the link. Without a flap running
// it does nothing.
func (p *Proxy) StopFlap() {
	p.flapMu.Lock()
	defer p.flapMu.Unlock()
	if p.stopFlapLocked() {
		p.Restore()
	}
}

// stopFlapLocked stops the running flap, if any, and waits for it.
func (p *Proxy) stopFlapLocked() bool {
	f := p.flap
	if f == nil {
		return false
	}
	p.flap = nil
	close(f.stop)
	<-f.done
	return true
}

// sleep waits d; false if the flap was stopped meanwhile.
func (f *flapper) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-f.stop:
		return false
	}
}

func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.Int64N(int64(hi-lo)+1))
}
