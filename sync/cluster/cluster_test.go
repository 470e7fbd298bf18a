package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// testCluster holds real nodes: TLS over loopback TCP, bolt logs and file
// snapshots in t.TempDir().
type testCluster struct {
	t     *testing.T
	ca    *CA
	nodes map[string]*testNode
}

type testNode struct {
	*Node
	fsm  *mapFSM
	dir  string
	addr string
	opts Options
}

func newTestCluster(t *testing.T) *testCluster {
	t.Helper()
	ca, err := NewCA("test cluster", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &testCluster{t: t, ca: ca, nodes: map[string]*testNode{}}
}

func (c *testCluster) tlsFor(ca *CA, id string) *tls.Config {
	c.t.Helper()
	cert, key, err := ca.Issue(id, time.Hour)
	if err != nil {
		c.t.Fatal(err)
	}
	cfg, err := TLSConfig(ca.CertPEM, cert, key)
	if err != nil {
		c.t.Fatal(err)
	}
	return cfg
}

func testLogger() *slog.Logger {
	if os.Getenv("CLUSTER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func fastOptions(id, dir string, cfg *tls.Config, fsm *mapFSM) Options {
	return Options{
		ID: id, RaftAddr: "127.0.0.1:0", Dir: dir, TLS: cfg, FSM: fsm, Logger: testLogger(),
		HeartbeatTimeout: 500 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond,
		LeaderLeaseTimeout: 250 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
		Timeout: 2 * time.Second, HandshakeTimeout: 2 * time.Second,
	}
}

// start opens a node; mod may change its options (bootstrap, snapshot knobs).
func (c *testCluster) start(id string, mod func(*Options)) *testNode {
	c.t.Helper()
	fsm := newMapFSM()
	opts := fastOptions(id, c.t.TempDir(), c.tlsFor(c.ca, id), fsm)
	if mod != nil {
		mod(&opts)
	}
	return c.open(opts)
}

func (c *testCluster) open(opts Options) *testNode {
	c.t.Helper()
	n, err := Open(context.Background(), opts)
	if err != nil {
		c.t.Fatalf("open node %s: %v", opts.ID, err)
	}
	tn := &testNode{Node: n, fsm: opts.FSM.(*mapFSM), dir: opts.Dir, addr: n.Addr(), opts: opts}
	c.nodes[opts.ID] = tn
	c.t.Cleanup(func() { n.Close() })
	return tn
}

// restart reopens a closed node from its directory at its old address, with a
// fresh FSM (as a restarted process would have).
func (c *testCluster) restart(tn *testNode) *testNode {
	c.t.Helper()
	opts := tn.opts
	opts.RaftAddr = tn.addr // Bootstrap kept: a restarted first node must not re-bootstrap
	opts.FSM = newMapFSM()
	return c.open(opts)
}

// threeNodes bootstraps n1 and adds n2, n3 as voters.
func (c *testCluster) threeNodes(mod func(*Options)) *testNode {
	c.t.Helper()
	c.start("n1", func(o *Options) {
		o.Bootstrap = true
		if mod != nil {
			mod(o)
		}
	})
	leader := c.waitLeader(nil)
	for _, id := range []string{"n2", "n3"} {
		n := c.start(id, mod)
		if err := leader.AddVoter(ctxT(c.t, 10*time.Second), id, n.Addr()); err != nil {
			c.t.Fatal(err)
		}
	}
	return leader
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLeader waits for one of the open nodes (except skip) to lead.
func (c *testCluster) waitLeader(skip *testNode) *testNode {
	c.t.Helper()
	var leader *testNode
	eventually(c.t, 10*time.Second, "no leader elected", func() bool {
		for _, n := range c.nodes {
			if n != skip && !n.closed() && n.IsLeader() {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

func (n *testNode) closed() bool { return n.trans == nil }

func (c *testCluster) followers(leader *testNode) []*testNode {
	var out []*testNode
	for _, n := range c.nodes {
		if n != leader && !n.closed() {
			out = append(out, n)
		}
	}
	return out
}

// applyMany applies count entries prefix-i=vi, 8 at a time, through leader or,
// should leadership move under load, through whichever node leads then (the
// entries set keys, so a retried one is harmless).
func (c *testCluster) applyMany(leader *testNode, prefix string, count int) {
	c.t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, count)
	sem := make(chan struct{}, 8)
	for i := range count {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs <- c.applyRetrying(leader, fmt.Appendf(nil, "%s-%d=v%d", prefix, i, i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			c.t.Fatal(err)
		}
	}
}

func (c *testCluster) applyRetrying(n *testNode, cmd []byte) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := n.Apply(ctx, cmd)
		cancel()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		if !errors.Is(err, ErrNotLeader) && !errors.Is(err, raft.ErrLeadershipLost) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("apply through %s: %w", n.ID(), err)
		}
		time.Sleep(20 * time.Millisecond) // backoff between retries, not an assertion
		if id, _ := n.Leader(); c.nodes[id] != nil && !c.nodes[id].closed() {
			n = c.nodes[id]
		}
	}
}

// waitSame waits until every open node's FSM holds want keys and all digests agree.
func (c *testCluster) waitSame(want int) {
	c.t.Helper()
	eventually(c.t, 20*time.Second, fmt.Sprintf("nodes did not converge on %d keys", want), func() bool {
		first := ""
		for _, n := range c.nodes {
			if n.closed() {
				continue
			}
			d, k := n.fsm.digest()
			if k != want || (first != "" && d != first) {
				return false
			}
			first = d
		}
		return true
	})
}

func TestClusterReplicatesFailsOverAndCatchesUp(t *testing.T) {
	c := newTestCluster(t)
	leader := c.threeNodes(nil)
	c.applyMany(leader, "a", 1000)
	c.waitSame(1000)

	// Followers refuse leader-only calls and name the leader.
	for _, f := range c.followers(leader) {
		_, err := f.Apply(ctxT(t, 5*time.Second), []byte("x=y"))
		var nle *NotLeaderError
		if !errors.As(err, &nle) || !errors.Is(err, ErrNotLeader) || nle.LeaderID != leader.ID() {
			t.Fatalf("Apply on follower %s: got %v, want NotLeaderError naming %s", f.ID(), err, leader.ID())
		}
		if err := f.Barrier(ctxT(t, 5*time.Second)); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("Barrier on follower %s: got %v, want ErrNotLeader", f.ID(), err)
		}
		if err := f.VerifyLeader(ctxT(t, 5*time.Second)); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("VerifyLeader on follower %s: got %v, want ErrNotLeader", f.ID(), err)
		}
	}
	if err := leader.VerifyLeader(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("VerifyLeader on the leader: %v", err)
	}

	// Kill the leader: another takes over and applies go on.
	start := time.Now()
	old := leader
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	leader = c.waitLeader(old)
	if err := leader.Barrier(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	t.Logf("failover to %s in %v", leader.ID(), time.Since(start))
	c.applyMany(leader, "b", 100)
	c.waitSame(1100)

	// The old leader restarted from its directory catches up.
	c.restart(old)
	c.waitSame(1100)
	if st := c.nodes[old.ID()].Stats(); st.State != "Follower" || st.AppliedIndex < leader.Stats().CommitIndex-5 {
		t.Fatalf("restarted node stats %+v, leader %+v", st, leader.Stats())
	}
}

func TestMembersAndRemove(t *testing.T) {
	c := newTestCluster(t)
	leader := c.threeNodes(nil)
	ms, err := leader.Members()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 {
		t.Fatalf("members %+v, want 3", ms)
	}
	for _, m := range ms {
		n := c.nodes[m.ID]
		if n == nil || m.Raft != n.addr || m.Suffrage != "Voter" || m.Leader != (m.ID == leader.ID()) {
			t.Fatalf("member %+v does not match node (leader %s)", m, leader.ID())
		}
		if m.ID == leader.ID() && (m.State != "Leader" || m.LastIndex == 0) {
			t.Fatalf("leader's own entry %+v lacks state or last index", m)
		}
	}
	gone := c.followers(leader)[0]
	if err := gone.Remove(ctxT(t, 5*time.Second), leader.ID()); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Remove on a follower: got %v, want ErrNotLeader", err)
	}
	if err := leader.Remove(ctxT(t, 10*time.Second), gone.ID()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "removed node still listed", func() bool {
		for _, n := range c.followers(leader) {
			if n == gone {
				continue
			}
			ms, err := n.Members()
			if err != nil || len(ms) != 2 {
				return false
			}
		}
		ms, _ := leader.Members()
		return len(ms) == 2
	})
	c.applyMany(leader, "after", 10)
	gone.Close()
	c.waitSame(10)
}
