package linkproxy

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestForward(t *testing.T) {
	t.Parallel()
	p := openProxy(t, echoServer(t))
	a, b := dial(t, p), dial(t, p)
	roundTrip(t, a, "hello")
	roundTrip(t, b, "world")
	big := payload(1 << 20)
	roundTrip(t, a, string(big))
	want := int64(len("hello") + len("world") + len(big))
	if s := p.Stats(); s != (Stats{Conns: 2, BytesUp: want, BytesDown: want}) {
		t.Errorf("Stats = %+v, want 2 conns and %d bytes each way", s, want)
	}
}

func TestForwardHTTP(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello "+r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	p := openProxy(t, srv.Listener.Addr().String())
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	get := func() error {
		resp, err := c.Get("http://" + p.Addr().String() + "/x")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && string(body) != "hello /x" {
			err = errors.New("body " + string(body))
		}
		return err
	}
	if err := get(); err != nil {
		t.Fatal(err)
	}
	p.Cut()
	if err := get(); err == nil {
		t.Fatal("GET through a cut link succeeded")
	}
	p.Restore()
	if err := get(); err != nil {
		t.Fatalf("after Restore: %v", err)
	}
}

func TestCut(t *testing.T) {
	t.Parallel()
	ln := listen(t)
	p := openProxy(t, ln.Addr().String())
	c := dial(t, p)
	s := accept(t, ln)
	send(t, c, s, "ping")
	send(t, s, c, "pong")

	p.Cut()
	p.Cut() // already down: not another cut
	if !p.Down() {
		t.Error("Down() = false after Cut")
	}
	expectClosed(t, c, "client side")
	expectClosed(t, s, "target side")
	expectRefused(t, p, "new connection while cut")

	p.Restore()
	if p.Down() {
		t.Error("Down() = true after Restore")
	}
	c = dial(t, p)
	s = accept(t, ln)
	send(t, c, s, "again")
	if got := p.Stats(); got.Cuts != 1 || got.Conns != 3 {
		t.Errorf("Stats = %+v, want 1 cut and 3 conns", got)
	}
}

func TestBlackhole(t *testing.T) {
	t.Parallel()
	p := openProxy(t, echoServer(t))
	old := dial(t, p)
	roundTrip(t, old, "before")
	up := p.Stats().BytesUp

	p.Blackhole()
	if !p.Down() {
		t.Error("Down() = false in a blackhole")
	}
	held := dial(t, p)
	for _, c := range []net.Conn{old, held} {
		if _, err := c.Write([]byte("lost")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("read in a blackhole: %v, want a timeout", err)
		}
	}
	if got := p.Stats().BytesUp; got != up {
		t.Errorf("%d bytes went up through a blackhole", got-up)
	}

	p.Restore()
	expectClosed(t, old, "connection open before the blackhole")
	expectClosed(t, held, "connection accepted in the blackhole")
	roundTrip(t, dial(t, p), "after")
}

// TestRate is a functional check of the throttle, not a benchmark: the
// bounds are loose.
func TestRate(t *testing.T) {
	t.Parallel()
	p := openProxy(t, echoServer(t))
	p.SetRate(100 << 10)
	c := dial(t, p)
	data := payload(300 << 10)
	start := time.Now()
	roundTrip(t, c, string(data)) // both directions at 100 KiB/s, pipelined: ~3 s
	if d := time.Since(start); d < 2500*time.Millisecond || d > 12*time.Second {
		t.Errorf("300 KiB at 100 KiB/s took %v, want about 3s", d)
	}
	p.SetRate(0)
	roundTrip(t, c, string(payload(1<<20)))
}

func TestDelay(t *testing.T) {
	t.Parallel()
	p := openProxy(t, echoServer(t))
	c := dial(t, p)
	roundTrip(t, c, "warm up") // dialled the target
	p.SetDelay(100 * time.Millisecond)
	start := time.Now()
	roundTrip(t, c, "ping")
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("round trip with 100ms each way took %v", d)
	}
	// A sleep per read would need 32 reads × 100 ms each way.
	start = time.Now()
	roundTrip(t, c, string(payload(1<<20)))
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("1 MiB with 100ms delay took %v: delay caps throughput", d)
	}
}

func TestFlap(t *testing.T) {
	t.Parallel()
	p := openProxy(t, echoServer(t))
	if err := p.StartFlap(0, 0, time.Millisecond, time.Millisecond, 1); !errors.Is(err, ErrFlapRange) {
		t.Errorf("StartFlap with a zero down time: %v, want ErrFlapRange", err)
	}
	ms := time.Millisecond
	if err := p.StartFlap(10*ms, 30*ms, 10*ms, 30*ms, 1); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return p.Stats().Cuts >= 3 }, "3 cuts")
	p.StopFlap()
	if p.Down() {
		t.Error("Down() after StopFlap")
	}
	n := p.Stats().Cuts
	roundTrip(t, dial(t, p), "steady")
	time.Sleep(50 * time.Millisecond)
	if got := p.Stats().Cuts; got != n {
		t.Errorf("%d cuts after StopFlap", got-n)
	}
}

// TestClose is not parallel: it counts goroutines.
func TestClose(t *testing.T) {
	target := echoServer(t)
	before := runtime.NumGoroutine()
	p, err := Open("127.0.0.1:0", target, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	for range 3 {
		c := dial(t, p)
		roundTrip(t, c, "live")
		conns = append(conns, c)
	}
	p.SetDelay(time.Hour) // a chunk waiting in a queue
	if _, err := conns[0].Write([]byte("queued")); err != nil {
		t.Fatal(err)
	}
	p.SetRate(1) // a writer waiting for tokens
	p.SetDelay(0)
	if _, err := conns[1].Write([]byte("throttled")); err != nil {
		t.Fatal(err)
	}
	p.Blackhole()
	conns = append(conns, dial(t, p))
	if err := p.StartFlap(time.Hour, time.Hour, time.Hour, time.Hour, 1); err != nil {
		t.Fatal(err)
	}

	closed := make(chan error)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	for _, c := range conns {
		expectClosed(t, c, "connection open at Close")
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := p.StartFlap(time.Second, time.Second, time.Second, time.Second, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("StartFlap after Close: %v, want ErrClosed", err)
	}
	p.Cut()
	p.Restore()
	eventually(t, func() bool { return runtime.NumGoroutine() <= before }, "goroutines back to where they were")
}

func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	var b bucket
	steps := []struct {
		at       time.Duration
		n        int
		wantN    int
		wantWait time.Duration
	}{
		{0, 1 << 20, 1 << 20, 0}, // unlimited
		{0, 1 << 20, 2048, 20 * ms},
		{0, 100, 100, 20*ms + 976562},
		{time.Second, 5000, 2048, 0}, // the debt is paid and the burst is one piece
		{time.Second, 2048, 2048, 20 * ms},
		{time.Second - ms, 2048, 2048, 40 * ms}, // a late caller does not turn the clock back
	}
	for i, s := range steps {
		if i == 1 {
			b.set(100 << 10) // piece = 2048
		}
		n, wait, _ := b.take(s.n, t0.Add(s.at))
		if n != s.wantN || (wait-s.wantWait).Abs() > 1000 {
			t.Errorf("step %d: take(%d) = %d, %v; want %d, %v", i, s.n, n, wait, s.wantN, s.wantWait)
		}
	}
	_, _, changed := b.take(1, t0)
	b.set(0)
	select {
	case <-changed:
	default:
		t.Error("a rate change did not void the reservation")
	}
}

func TestPieceSize(t *testing.T) {
	for _, c := range []struct {
		rate int64
		want int
	}{{1, 512}, {1000, 512}, {100 << 10, 2048}, {1 << 30, 32 << 10}} {
		if got := pieceSize(c.rate); got != c.want {
			t.Errorf("pieceSize(%d) = %d, want %d", c.rate, got, c.want)
		}
	}
}

func TestBetween(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 0))
	for range 1000 {
		if d := between(r, 10, 20); d < 10 || d > 20 {
			t.Fatalf("between(10, 20) = %d", d)
		}
	}
	if d := between(r, 5, 5); d != 5 {
		t.Errorf("between(5, 5) = %d", d)
	}
}

func openProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := Open("127.0.0.1:0", target, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func listen(t *testing.T) *net.TCPListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln.(*net.TCPListener)
}

func accept(t *testing.T, ln *net.TCPListener) net.Conn {
	t.Helper()
	_ = ln.SetDeadline(time.Now().Add(5 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// echoServer starts a TCP echo server and returns its address.
func echoServer(t *testing.T) string {
	t.Helper()
	ln := listen(t)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				_, _ = io.Copy(c, c)
				_ = c.Close()
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip sends msg through an echo and checks it comes back intact.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	send(t, c, c, msg)
}

// send writes msg to from and reads it back from to.
func send(t *testing.T, from, to net.Conn, msg string) {
	t.Helper()
	werr := make(chan error, 1)
	go func() {
		_, err := from.Write([]byte(msg))
		werr <- err
	}()
	_ = to.SetReadDeadline(time.Now().Add(15 * time.Second))
	got := make([]byte, len(msg))
	_, err := io.ReadFull(to, got)
	_ = to.SetReadDeadline(time.Time{})
	if err != nil {
		t.Fatalf("read %d bytes: %v", len(msg), err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, []byte(msg)) {
		t.Fatalf("%d bytes came back altered", len(msg))
	}
}

// expectClosed checks that c fails fast with an error other than a timeout.
// expectRefused checks that a new connection through p does not get
// through: the reset may come during the handshake (dial fails) or right
// after it (the first read fails), depending on scheduling.
func expectRefused(t *testing.T, p *Proxy, what string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr().String(), 5*time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	expectClosed(t, c, what)
}

func expectClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("%s: read returned %v, want the connection closed", what, err)
	}
}

func payload(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 0))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func eventually(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s in 5s", what)
		}
	}
}
