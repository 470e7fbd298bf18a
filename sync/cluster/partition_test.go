package cluster

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// gate forwards TCP connections to a target until cut: then it closes the
// connections it carries and every new one, until healed. It stands for
// the network between two nodes (one direction of dialing).
type gate struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func openGate(t *testing.T, target string) *gate {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ln: ln, target: target, conns: map[net.Conn]bool{}}
	g.wg.Add(1)
	go g.accept()
	t.Cleanup(g.close)
	return g
}

func (g *gate) accept() {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.wg.Add(1)
		go g.forward(c)
	}
}

func (g *gate) forward(c net.Conn) {
	defer g.wg.Done()
	s, err := net.DialTimeout("tcp", g.target, time.Second)
	if err != nil || !g.track(c, s) {
		c.Close()
		if s != nil {
			s.Close()
		}
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) { _, _ = io.Copy(dst, src); done <- struct{}{} }
	go pipe(s, c)
	go pipe(c, s)
	<-done
	c.Close()
	s.Close()
	<-done
	g.mu.Lock()
	delete(g.conns, c)
	delete(g.conns, s)
	g.mu.Unlock()
}

func (g *gate) track(c, s net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cut {
		return false
	}
	g.conns[c], g.conns[s] = true, true
	return true
}

func (g *gate) setCut(cut bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cut = cut
	if cut {
		for c := range g.conns {
			c.Close()
		}
	}
}

func (g *gate) close() {
	g.ln.Close()
	g.setCut(true)
	g.wg.Wait()
}

// mesh routes every node's dials to a peer through a gate of its own
// (Options.PeerAddress), made once the peer's address is known.
type mesh struct {
	t     *testing.T
	mu    sync.Mutex
	addrs map[string]string   // node id → raft address
	gates map[[2]string]*gate // from, to
	down  map[[2]string]bool  // pairs cut
	dials map[[2]string]int   // lookups per pair, to prove the hook is used
}

func newMesh(t *testing.T) *mesh {
	return &mesh{t: t, addrs: map[string]string{}, gates: map[[2]string]*gate{}, down: map[[2]string]bool{}, dials: map[[2]string]int{}}
}

func (m *mesh) register(id, addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.addrs[id] = addr
}

// route is node from's Options.PeerAddress.
func (m *mesh) route(from string) func(id string) (string, bool) {
	return func(to string) (string, bool) {
		m.mu.Lock()
		defer m.mu.Unlock()
		k := [2]string{from, to}
		g := m.gates[k]
		if g == nil {
			target, ok := m.addrs[to]
			if !ok {
				return "", false
			}
			g = openGate(m.t, target)
			g.setCut(m.down[k])
			m.gates[k] = g
		}
		m.dials[k]++
		return g.ln.Addr().String(), true
	}
}

// isolate cuts (or, with cut false, heals) every link between id and the others.
func (m *mesh) isolate(id string, cut bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for other := range m.addrs {
		for _, k := range [][2]string{{id, other}, {other, id}} {
			m.down[k] = cut
			if g := m.gates[k]; g != nil {
				g.setCut(cut)
			}
		}
	}
}

// A leader cut off from both followers steps down and refuses applies and
// VerifyLeader; the two others elect a leader and go on; healed, the old
// leader follows and catches up. Raft dials through Options.PeerAddress.
func TestPeerAddressPartitionAndHeal(t *testing.T) {
	c := newTestCluster(t)
	m := newMesh(t)
	withMesh := func(o *Options) { o.PeerAddress = m.route(o.ID) }
	c.start("n1", func(o *Options) { o.Bootstrap = true; withMesh(o) })
	m.register("n1", c.nodes["n1"].addr)
	leader := c.waitLeader(nil)
	for _, id := range []string{"n2", "n3"} {
		n := c.start(id, withMesh)
		m.register(id, n.addr)
		if err := leader.AddVoter(ctxT(t, 10*time.Second), id, n.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	c.applyMany(leader, "a", 50)
	c.waitSame(50)
	m.mu.Lock()
	if m.dials[[2]string{leader.ID(), "n2"}] == 0 {
		t.Fatalf("the leader never dialed n2 through PeerAddress: %v", m.dials)
	}
	m.mu.Unlock()

	old := leader
	m.isolate(old.ID(), true)
	_, err := old.Apply(ctxT(t, 10*time.Second), []byte("lost=1"))
	if !errors.Is(err, ErrNotLeader) && !errors.Is(err, raft.ErrLeadershipLost) {
		t.Fatalf("Apply on the isolated leader: got %v, want not leader or leadership lost", err)
	}
	eventually(t, 10*time.Second, "the isolated leader did not step down", func() bool { return !old.IsLeader() })
	if err := old.VerifyLeader(ctxT(t, 5*time.Second)); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("VerifyLeader on the isolated old leader: got %v, want ErrNotLeader", err)
	}
	leader = c.waitLeader(old)
	c.applyMany(leader, "b", 20)

	m.isolate(old.ID(), false)
	c.waitSame(70) // 50 + 20: the entry proposed to the isolated leader never committed
	// It knows the leader by its own raft address, not by the proxy's.
	eventually(t, 10*time.Second, "the old leader does not follow the new one", func() bool {
		id, addr := old.Leader()
		return id == leader.ID() && addr == leader.addr && !old.IsLeader()
	})
}
