package hub

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/identity/sas"
)

// testNode is one in-process node of a test cluster.
type testNode struct {
	id     string
	dir    string
	ready  Ready
	cancel context.CancelFunc
	done   chan error
}

const clusterHost = "hub.test"

// startNode runs a cluster node: the first when join is "".
func startNode(t *testing.T, dir, id, join string, key []byte) *testNode {
	t.Helper()
	return startNodeWith(t, nodeConfig(dir, id, join, key))
}

// nodeConfig is a test node's configuration: loopback addresses, no logs.
func nodeConfig(dir, id, join string, key []byte) Config {
	cfg := Config{DataDir: dir, Listen: "127.0.0.1:0", Hostname: clusterHost, NodeID: id, Raft: "127.0.0.1:0", Join: join,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Stdout: io.Discard}
	if key != nil {
		cfg.OwnerKey = base64.StdEncoding.EncodeToString(key)
	}
	return cfg
}

// startNodeWith runs a node and waits for its ready.json.
func startNodeWith(t *testing.T, cfg Config) *testNode {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n := &testNode{id: cfg.NodeID, dir: cfg.DataDir, cancel: cancel, done: make(chan error, 1)}
	_ = os.Remove(filepath.Join(cfg.DataDir, "ready.json"))
	go func() { n.done <- Run(ctx, cfg) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		data, err := os.ReadFile(filepath.Join(cfg.DataDir, "ready.json"))
		if err == nil && json.Unmarshal(data, &n.ready) == nil {
			t.Cleanup(n.stop)
			return n
		}
		select {
		case err := <-n.done:
			t.Fatalf("node %s stopped: %v", cfg.NodeID, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("node %s not ready in 20s", cfg.NodeID)
	return nil
}

func (n *testNode) stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	<-n.done
	n.cancel = nil
}

func ownerKeyOf(t *testing.T, dir string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := sas.ParseConnString(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return cs.SharedAccessKey
}

// call makes an owner request to a node and returns the status and body.
func call(t *testing.T, key []byte, method, url string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", sas.NewToken(clusterHost, key, "owner", time.Now().Add(time.Hour)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// eventually retries f until it returns nil or 30 s pass.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err = f(); err == nil {
			return
		}
	}
	t.Fatalf("%s: %v", what, err)
}

func members(t *testing.T, key []byte, url string) ([]Member, error) {
	code, body := call(t, key, "GET", url+"/cluster/members", nil)
	if code != 200 {
		return nil, fmt.Errorf("members: %d %s", code, body)
	}
	var m []Member
	return m, json.Unmarshal(body, &m)
}

// Three nodes form a cluster through --join; a write at one node is read
// at another; the leader stops and the two others go on, and it comes back
// and catches up.
func TestClusterJoinForwardFailover(t *testing.T) {
	root := t.TempDir()
	n1 := startNode(t, filepath.Join(root, "n1"), "n1", "", nil)
	key := ownerKeyOf(t, n1.dir)
	n2 := startNode(t, filepath.Join(root, "n2"), "n2", n1.ready.URL, key)
	n3 := startNode(t, filepath.Join(root, "n3"), "n3", n2.ready.URL, key) // through a follower
	nodes := []*testNode{n1, n2, n3}
	eventually(t, "three members", func() error {
		m, err := members(t, key, n3.ready.URL)
		if err != nil {
			return err
		}
		up := 0
		for _, x := range m {
			if x.State == "Leader" || x.State == "Follower" {
				up++
			}
		}
		if up != 3 {
			return fmt.Errorf("members %+v", m)
		}
		return nil
	})
	for i, n := range nodes {
		code, body := call(t, key, "PUT", n.ready.URL+"/devices/dev"+fmt.Sprint(i), map[string]any{"deviceId": "dev" + fmt.Sprint(i)})
		if code != 200 {
			t.Fatalf("PUT at %s: %d %s", n.id, code, body)
		}
	}
	for _, n := range nodes {
		code, body := call(t, key, "GET", n.ready.URL+"/devices", nil)
		if code != 200 || strings.Count(string(body), `"deviceId"`) != 3 {
			t.Fatalf("GET /devices at %s: %d %s", n.id, code, body)
		}
	}
	// Stop the leader: the others elect one and take writes and reads.
	m, _ := members(t, key, n1.ready.URL)
	var leader *testNode
	for _, x := range m {
		for _, n := range nodes {
			if x.Leader && x.ID == n.id {
				leader = n
			}
		}
	}
	if leader == nil {
		t.Fatalf("no leader in %+v", m)
	}
	leader.stop()
	var rest []*testNode
	for _, n := range nodes {
		if n != leader {
			rest = append(rest, n)
		}
	}
	eventually(t, "a write after the leader stopped", func() error {
		code, body := call(t, key, "PATCH", rest[0].ready.URL+"/twins/dev0", map[string]any{"tags": map[string]any{"site": "b"}})
		if code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	code, body := call(t, key, "GET", rest[1].ready.URL+"/twins/dev0", nil)
	if code != 200 || !strings.Contains(string(body), `"site":"b"`) {
		t.Fatalf("twin at %s after failover: %d %s", rest[1].id, code, body)
	}
	// The old leader comes back as a follower and serves the new state.
	back := startNode(t, leader.dir, leader.id, rest[0].ready.URL, key)
	eventually(t, "the old leader catches up", func() error {
		code, body := call(t, key, "GET", back.ready.URL+"/twins/dev0", nil)
		if code != 200 || !strings.Contains(string(body), `"site":"b"`) {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
}
