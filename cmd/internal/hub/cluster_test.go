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
	"slices"
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

func testLogger() *slog.Logger {
	if os.Getenv("CLUSTER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startNode runs a cluster node: the first when join is "".
func startNode(t *testing.T, dir, id, join string, key []byte) *testNode {
	t.Helper()
	return startNodeWith(t, nodeConfig(dir, id, join, key))
}

// nodeConfig is a test node's configuration: loopback addresses, no logs.
func nodeConfig(dir, id, join string, key []byte) Config {
	cfg := Config{DataDir: dir, Listen: "127.0.0.1:0", Hostname: clusterHost, NodeID: id, Raft: "127.0.0.1:0", Join: join,
		Logger: testLogger(), Stdout: io.Discard}
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

// call makes an owner request to a node with a JSON body (nil: none) and
// returns the status and body.
func call(t *testing.T, key []byte, method, url string, body any) (int, []byte) {
	t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	return request(t, key, method, url, "application/json", b)
}

// request makes an owner request, with more headers as name, value
// pairs; a transport error is status 0 with the error as the body.
func request(t *testing.T, key []byte, method, url, contentType string, body []byte, hdr ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", sas.NewToken(clusterHost, key, "owner", time.Now().Add(time.Hour)))
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
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

// waitVoters waits until the cluster has n voters, each Leader or
// Follower with the leader's last index.
func waitVoters(t *testing.T, key []byte, url string, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d voters in step", n), func() error {
		m, err := members(t, key, url)
		if err != nil {
			return err
		}
		var last uint64
		for _, x := range m {
			if x.Leader {
				last = x.LastIndex
			}
		}
		up := 0
		for _, x := range m {
			if x.Suffrage == "Voter" && (x.State == "Leader" || x.State == "Follower") && x.LastIndex >= last {
				up++
			}
		}
		if up != n || len(m) != n {
			return fmt.Errorf("members %+v", m)
		}
		return nil
	})
}

// threeNodes starts a cluster of three nodes, n2 and n3 joining through n1,
// and waits until all three are voters in step.
func threeNodes(t *testing.T) ([]*testNode, []byte) {
	t.Helper()
	root := t.TempDir()
	n1 := startNode(t, filepath.Join(root, "n1"), "n1", "", nil)
	key := ownerKeyOf(t, n1.dir)
	n2 := startNode(t, filepath.Join(root, "n2"), "n2", n1.ready.URL, key)
	n3 := startNode(t, filepath.Join(root, "n3"), "n3", n1.ready.URL, key)
	waitVoters(t, key, n1.ready.URL, 3)
	return []*testNode{n1, n2, n3}, key
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
	waitVoters(t, key, n3.ready.URL, 3)
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
	// The nodes share the cluster's twin replica incarnation.
	incs := map[string]bool{}
	for _, n := range nodes {
		data, err := os.ReadFile(filepath.Join(n.dir, incarnationFile))
		if err != nil {
			t.Fatal(err)
		}
		incs[strings.TrimSpace(string(data))] = true
	}
	if len(incs) != 1 {
		t.Fatalf("incarnations %v: want one for the cluster", incs)
	}
	// A follower forwards a request without a valid token to the leader,
	// which refuses it; the follower closes the caller's connection too.
	for _, n := range nodes {
		resp, err := http.Get(n.ready.URL + "/devices")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 || !resp.Close {
			t.Fatalf("no token at %s: %d, close %v; want 401 and the connection closed", n.id, resp.StatusCode, resp.Close)
		}
	}
	// Every node reports its raft state on /healthz and /metrics.
	for _, n := range nodes {
		resp, err := http.Get(n.ready.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		var health struct {
			Cluster struct {
				ID, State, Leader string
			}
		}
		err = json.NewDecoder(resp.Body).Decode(&health)
		resp.Body.Close()
		if err != nil || health.Cluster.ID != n.id || health.Cluster.Leader == "" || health.Cluster.State == "" {
			t.Fatalf("healthz at %s: %+v %v", n.id, health, err)
		}
		code, body := call(t, key, "GET", n.ready.URL+"/metrics", nil)
		if code != 200 || !strings.Contains(string(body), "outpost_hub_raft_applied_index ") {
			t.Fatalf("metrics at %s: %d %s", n.id, code, body)
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

// singleHub runs a hub without cluster flags in dir, creates device id
// at it and stops it; it returns the owner key.
func singleHub(t *testing.T, dir, id string, key []byte) []byte {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg := Config{DataDir: dir, Listen: "127.0.0.1:0", Hostname: clusterHost,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Stdout: io.Discard}
	if key != nil {
		cfg.OwnerKey = base64.StdEncoding.EncodeToString(key)
	}
	go func() { done <- Run(ctx, cfg) }()
	var ready Ready
	eventually(t, "single hub ready", func() error {
		data, err := os.ReadFile(filepath.Join(dir, "ready.json"))
		if err != nil {
			return err
		}
		return json.Unmarshal(data, &ready)
	})
	if key == nil {
		key = ownerKeyOf(t, dir)
	}
	if code, body := call(t, key, "PUT", ready.URL+"/devices/"+id, map[string]any{"deviceId": id}); code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return key
}

// oldStateJoined waits until n2 and n3, joined to n1 (a former single
// hub), are voters, stops n1, and checks the two hold its device "old":
// they received its state although no log entry holds it.
func oldStateJoined(t *testing.T, key []byte, n1, n2, n3 *testNode) {
	t.Helper()
	waitVoters(t, key, n1.ready.URL, 3)
	n1.stop()
	eventually(t, "the device at the nodes that joined", func() error {
		for _, n := range []*testNode{n2, n3} {
			if code, body := call(t, key, "GET", n.ready.URL+"/devices/old", nil); code != 200 {
				return fmt.Errorf("%s: %d %s", n.id, code, body)
			}
		}
		return nil
	})
}

// A single hub with devices becomes the first node of a cluster: nodes that
// join receive its state (a snapshot: the state is in no log entry), and
// keep it when the first node is gone. A data directory with state cannot
// join.
func TestClusterFromSingleHub(t *testing.T) {
	root := t.TempDir()
	key := singleHub(t, filepath.Join(root, "n1"), "old", nil)
	n1 := startNode(t, filepath.Join(root, "n1"), "n1", "", nil)
	n2 := startNode(t, filepath.Join(root, "n2"), "n2", n1.ready.URL, key)
	n3 := startNode(t, filepath.Join(root, "n3"), "n3", n1.ready.URL, key)
	oldStateJoined(t, key, n1, n2, n3)
	// A copy of a node's store starts a new cluster of its own (docs:
	// Backing up): the old state, and new writes apply.
	n2.stop()
	if err := os.CopyFS(filepath.Join(root, "n5", "store"), os.DirFS(filepath.Join(root, "n2", "store"))); err != nil {
		t.Fatal(err)
	}
	n5 := startNode(t, filepath.Join(root, "n5"), "n5", "", key)
	eventually(t, "the rebuilt cluster reads", func() error {
		if code, body := call(t, key, "GET", n5.ready.URL+"/devices/old", nil); code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	if code, body := call(t, key, "PUT", n5.ready.URL+"/devices/new", map[string]any{"deviceId": "new"}); code != 200 {
		t.Fatalf("first write at the rebuilt cluster: %d %s", code, body)
	}
	for _, d := range []string{"old", "new"} {
		if code, body := call(t, key, "GET", n5.ready.URL+"/devices/"+d, nil); code != 200 {
			t.Fatalf("GET %s at the rebuilt cluster: %d %s", d, code, body)
		}
	}
	// A directory with a hub's state cannot join: its state is not the cluster's.
	dir := filepath.Join(root, "n4")
	singleHub(t, dir, "stray", key)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Run(ctx, Config{DataDir: dir, Listen: "127.0.0.1:0", Hostname: clusterHost, NodeID: "n4",
		Raft: "127.0.0.1:0", Join: n5.ready.URL, OwnerKey: base64.StdEncoding.EncodeToString(key),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Stdout: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "holds a hub's state") {
		t.Fatalf("joining with a hub's state: %v, want a refusal", err)
	}
}

// A single hub stopped as a first node before its state reached the
// cluster's first snapshot finishes that on its next start: joins wait
// for it, and the nodes that join receive the old state.
func TestClusterFromSingleHubInterrupted(t *testing.T) {
	root := t.TempDir()
	key := singleHub(t, filepath.Join(root, "n1"), "old", nil)
	startNode(t, filepath.Join(root, "n1"), "n1", "", nil).stop() // at ready: before the first migrate tick
	n1 := startNode(t, filepath.Join(root, "n1"), "n1", "", nil)
	n2 := startNode(t, filepath.Join(root, "n2"), "n2", n1.ready.URL, key)
	n3 := startNode(t, filepath.Join(root, "n3"), "n3", n1.ready.URL, key)
	oldStateJoined(t, key, n1, n2, n3)
}

// A stopped node leaves through another; an id that is no node's is
// refused, not taken as done.
func TestClusterLeave(t *testing.T) {
	nodes, key := threeNodes(t)
	n1, n2 := nodes[0], nodes[1]
	if code, body := call(t, key, "DELETE", n1.ready.URL+"/cluster/members/n9", nil); code != 404 || !strings.Contains(string(body), "no node") {
		t.Fatalf("leave of an unknown id: %d %s, want 404", code, body)
	}
	n2.stop()
	if code, body := call(t, key, "DELETE", n1.ready.URL+"/cluster/members/n2", nil); code != 204 {
		t.Fatalf("leave n2: %d %s", code, body)
	}
	m, err := members(t, key, n1.ready.URL)
	if err != nil || len(m) != 2 || slices.ContainsFunc(m, func(m Member) bool { return m.ID == "n2" }) {
		t.Fatalf("members after n2 left: %+v %v", m, err)
	}
}

// The raft log is bounded in bytes too: once --raft-snapshot-size of
// commands were applied, the node takes a snapshot, long before raft's
// count of entries would.
func TestClusterSnapshotBySize(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n1")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{DataDir: dir, Listen: "127.0.0.1:0", Hostname: clusterHost, NodeID: "n1", Raft: "127.0.0.1:0",
			SnapshotBytes: 4 << 10, Logger: testLogger(), Stdout: io.Discard})
	}()
	defer func() { cancel(); <-done }()
	var ready Ready
	eventually(t, "ready", func() error {
		data, err := os.ReadFile(filepath.Join(dir, "ready.json"))
		if err != nil {
			return err
		}
		return json.Unmarshal(data, &ready)
	})
	key := ownerKeyOf(t, dir)
	status := func() (s nodeStatus) {
		code, body := call(t, key, "GET", ready.URL+"/cluster/status", nil)
		if code != 200 || json.Unmarshal(body, &s) != nil {
			t.Fatalf("status: %d %s", code, body)
		}
		return s
	}
	eventually(t, "a leader", func() error {
		if code, body := call(t, key, "PUT", ready.URL+"/devices/d0", map[string]any{"deviceId": "d0"}); code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	if s := status(); s.LastSnapshotIndex != 0 {
		t.Fatalf("a snapshot before 4 KiB of commands: %+v", s)
	}
	for i := 1; i < 40; i++ { // each PUT is a command of a few hundred bytes
		if code, body := call(t, key, "PUT", ready.URL+fmt.Sprintf("/devices/d%d", i), map[string]any{"deviceId": fmt.Sprintf("d%d", i)}); code != 200 {
			t.Fatalf("PUT: %d %s", code, body)
		}
	}
	eventually(t, "a snapshot by size", func() error {
		if s := status(); s.LastSnapshotIndex == 0 {
			return fmt.Errorf("no snapshot yet: %+v", s)
		}
		return nil
	})
}
