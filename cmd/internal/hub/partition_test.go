package hub

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/linkproxy"
)

// raftMesh puts a linkproxy on each ordered pair of nodes (i dials j
// through proxy i→j: Config.RaftPeerAddress), so a test can partition
// nodes, lose and delay their messages. Only the raft links go through
// it; the nodes' APIs (and a follower's forwarding) do not.
type raftMesh struct {
	t       *testing.T
	mu      sync.Mutex
	addrs   map[string]string                    // node id → raft address
	proxies map[[2]string]*linkproxy.Proxy       // from, to
	down    map[[2]string]func(*linkproxy.Proxy) // pairs down: Cut or Blackhole
	nowhere *linkproxy.Proxy                     // cut for good: peers whose address is not known yet
	stale   bool                                 // nodes answer reads unconfirmed (Config.staleReads)
}

func newRaftMesh(t *testing.T) *raftMesh {
	t.Helper()
	m := &raftMesh{t: t, addrs: map[string]string{}, proxies: map[[2]string]*linkproxy.Proxy{}, down: map[[2]string]func(*linkproxy.Proxy){}}
	m.nowhere = m.open("127.0.0.1:1")
	m.nowhere.Cut()
	return m
}

func (m *raftMesh) open(target string) *linkproxy.Proxy {
	p, err := linkproxy.Open("127.0.0.1:0", target, linkproxy.Options{})
	if err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(func() { _ = p.Close() })
	return p
}

// start runs a node whose raft dials go through the mesh, and records its
// raft address (a restarted node may come back on another one).
func (m *raftMesh) start(t *testing.T, cfg Config) *testNode {
	t.Helper()
	cfg.RaftPeerAddress = m.route(cfg.NodeID)
	cfg.staleReads = m.stale
	n := startNodeWith(t, cfg)
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.addrs[n.id]; ok && old != n.ready.Raft {
		for k, p := range m.proxies {
			if k[1] == n.id {
				_ = p.Close()
				delete(m.proxies, k)
			}
		}
	}
	m.addrs[n.id] = n.ready.Raft
	return n
}

// route is node from's RaftPeerAddress. A peer whose address the test
// has not read yet is unreachable (never dialed directly, which would
// bypass the mesh): raft retries.
func (m *raftMesh) route(from string) func(id string) (string, bool) {
	return func(to string) (string, bool) {
		m.mu.Lock()
		defer m.mu.Unlock()
		k := [2]string{from, to}
		if p := m.proxies[k]; p != nil {
			return p.Addr().String(), true
		}
		target, ok := m.addrs[to]
		if !ok {
			return m.nowhere.Addr().String(), true
		}
		p := m.open(target)
		if f := m.down[k]; f != nil {
			f(p)
		}
		m.proxies[k] = p
		return p.Addr().String(), true
	}
}

// links calls f on every pair of ids with a proxy on it, made if needed
// (with the address known, so a cut lasts when raft dials again).
func (m *raftMesh) links(pairs [][2]string, f func(k [2]string, p *linkproxy.Proxy)) {
	for _, k := range pairs {
		m.route(k[0])(k[1])
		m.mu.Lock()
		p := m.proxies[k]
		m.mu.Unlock()
		if p != nil {
			f(k, p)
		}
	}
}

// across are the pairs, both directions, between id and every other node.
func (m *raftMesh) across(id string) [][2]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out [][2]string
	for other := range m.addrs {
		if other != id {
			out = append(out, [2]string{id, other}, [2]string{other, id})
		}
	}
	return out
}

// all are every ordered pair of known nodes.
func (m *raftMesh) all() [][2]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out [][2]string
	for a := range m.addrs {
		for b := range m.addrs {
			if a != b {
				out = append(out, [2]string{a, b})
			}
		}
	}
	return out
}

// isolate cuts every raft link to and from id: peers see resets.
func (m *raftMesh) isolate(id string) { m.partition(id, (*linkproxy.Proxy).Cut) }

// silence blackholes every raft link to and from id: peers see timeouts.
func (m *raftMesh) silence(id string) { m.partition(id, (*linkproxy.Proxy).Blackhole) }

func (m *raftMesh) partition(id string, down func(*linkproxy.Proxy)) {
	m.links(m.across(id), func(k [2]string, p *linkproxy.Proxy) {
		m.mu.Lock()
		m.down[k] = down
		m.mu.Unlock()
		down(p)
	})
}

// heal restores every link, stops flapping and removes delay.
func (m *raftMesh) heal() {
	m.links(m.all(), func(k [2]string, p *linkproxy.Proxy) {
		m.mu.Lock()
		delete(m.down, k)
		m.mu.Unlock()
		p.StopFlap()
		p.SetDelay(0)
		p.Restore()
	})
}

// lossy makes every link flap (connections reset at random: raft messages
// in flight are lost) and adds delay.
func (m *raftMesh) lossy(seed int64, delay time.Duration) {
	m.links(m.all(), func(k [2]string, p *linkproxy.Proxy) {
		p.SetDelay(delay)
		seed++
		if err := p.StartFlap(20*time.Millisecond, 150*time.Millisecond, 100*time.Millisecond, 600*time.Millisecond, seed); err != nil {
			m.t.Error(err)
		}
	})
}

// threeNodes starts n1, n2 (joining n1) and n3 (joining n2) on the mesh and
// waits until all three are up.
func (m *raftMesh) threeNodes(t *testing.T) ([]*testNode, []byte) {
	t.Helper()
	root := t.TempDir()
	n1 := m.start(t, nodeConfig(filepath.Join(root, "n1"), "n1", "", nil))
	key := ownerKeyOf(t, n1.dir)
	n2 := m.start(t, nodeConfig(filepath.Join(root, "n2"), "n2", n1.ready.URL, key))
	n3 := m.start(t, nodeConfig(filepath.Join(root, "n3"), "n3", n2.ready.URL, key))
	nodes := []*testNode{n1, n2, n3}
	eventually(t, "three members up", func() error {
		_, err := leaderOf(t, key, nodes)
		return err
	})
	return nodes, key
}

// leaderOf returns the node every live node's /cluster/status names as
// the leader, with that node agreeing.
func leaderOf(t *testing.T, key []byte, nodes []*testNode) (*testNode, error) {
	var leader *testNode
	for _, n := range nodes {
		st, err := statusOf(t, key, n)
		if err != nil {
			return nil, err
		}
		for _, c := range nodes {
			if c.id == st.Leader {
				if leader != nil && leader != c {
					return nil, fmt.Errorf("%s names %s, another node names %s", n.id, c.id, leader.id)
				}
				leader = c
			}
		}
		if leader == nil {
			return nil, fmt.Errorf("%s knows no leader (%+v)", n.id, st)
		}
	}
	if st, err := statusOf(t, key, leader); err != nil || st.State != "Leader" {
		return nil, fmt.Errorf("%s is named leader but is %+v (%v)", leader.id, st, err)
	}
	return leader, nil
}

func statusOf(t *testing.T, key []byte, n *testNode) (nodeStatus, error) {
	code, body := call(t, key, "GET", n.ready.URL+"/cluster/status", nil)
	var st nodeStatus
	if code != 200 {
		return st, fmt.Errorf("status of %s: %d %s", n.id, code, body)
	}
	return st, json.Unmarshal(body, &st)
}

// A leader cut off from both followers answers no read and no write: its
// reads wait for VerifyLeader, which fails, so they are 503 even in the
// moments it still believes it leads; it steps down; the others elect a
// leader and take writes; healed, the old leader serves the new state.
func TestClusterPartitionedLeaderAnswersNothing(t *testing.T) {
	m := newRaftMesh(t)
	nodes, key := m.threeNodes(t)
	if code, body := call(t, key, "PUT", nodes[0].ready.URL+"/devices/d1", map[string]any{"deviceId": "d1"}); code != 200 {
		t.Fatalf("PUT /devices/d1: %d %s", code, body)
	}
	patch := func(n *testNode, v string) (int, []byte) {
		return call(t, key, "PATCH", n.ready.URL+"/twins/d1", map[string]any{"tags": map[string]any{"k": v}})
	}
	if code, body := patch(nodes[1], "before"); code != 200 {
		t.Fatalf("PATCH: %d %s", code, body)
	}
	old, err := leaderOf(t, key, nodes)
	if err != nil {
		t.Fatal(err)
	}
	m.isolate(old.id)
	// At once, while it still believes it leads (its lease has not run out).
	if code, body := call(t, key, "GET", old.ready.URL+"/twins/d1", nil); code != 503 {
		t.Fatalf("GET at the isolated leader %s: %d %s, want 503 (it must confirm its leadership before a read)", old.id, code, body)
	}
	if code, body := patch(old, "lost"); code != 503 {
		t.Fatalf("PATCH at the isolated leader %s: %d %s, want 503", old.id, code, body)
	}
	eventually(t, "the isolated leader steps down", func() error {
		if st, err := statusOf(t, key, old); err != nil || st.State == "Leader" {
			return fmt.Errorf("%+v %v", st, err)
		}
		return nil
	})
	var rest []*testNode
	for _, n := range nodes {
		if n != old {
			rest = append(rest, n)
		}
	}
	eventually(t, "a write in the majority", func() error {
		if code, body := patch(rest[0], "after"); code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	if code, body := call(t, key, "GET", old.ready.URL+"/twins/d1", nil); code != 503 {
		t.Fatalf("GET at the isolated old leader: %d %s, want 503", code, body)
	}
	m.heal()
	eventually(t, "the old leader serves the majority's write", func() error {
		code, body := call(t, key, "GET", old.ready.URL+"/twins/d1", nil)
		if code != 200 || !strings.Contains(string(body), `"k":"after"`) {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
}
