package clusterbench

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
	"testing"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/hub"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/identity/sas"
)

// The nodes of the in-process benchmarks: cmd/internal/hub.Run, as
// `outpost hub` runs it, each in its own data directory (a test-only copy
// of cmd/internal/hub's cluster test harness).

const hostName = "hub.bench"

func logger() *slog.Logger {
	if os.Getenv("CLUSTERBENCH_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

func check(b testing.TB, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// node is one in-process hub.
type node struct {
	id     string
	url    string
	cancel context.CancelFunc
	done   chan error
}

// startNode runs a hub in dir: a single hub when id is "", else a cluster
// node (the first when join is ""). Every node has the owner key key.
func startNode(b testing.TB, dir, id, join string, key []byte) *node {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{id: id, cancel: cancel, done: make(chan error, 1)}
	cfg := hub.Config{DataDir: dir, Listen: "127.0.0.1:0", Hostname: hostName, OwnerKey: base64.StdEncoding.EncodeToString(key),
		Logger: logger(), Stdout: io.Discard}
	if id != "" {
		cfg.NodeID, cfg.Raft, cfg.Join = id, "127.0.0.1:0", join
	}
	go func() { n.done <- hub.Run(ctx, cfg) }()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		var rd hub.Ready
		if data, err := os.ReadFile(filepath.Join(dir, "ready.json")); err == nil && json.Unmarshal(data, &rd) == nil {
			n.url = rd.URL
			return n
		}
		select {
		case err := <-n.done:
			cancel()
			b.Fatalf("hub %q in %s stopped: %v", id, dir, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	n.stop()
	b.Fatalf("hub %q in %s not ready in 20 s", id, dir)
	return nil
}

func (n *node) stop() {
	if n.cancel != nil {
		n.cancel()
		<-n.done
		n.cancel = nil
	}
}

// startCluster starts size nodes in root (size 0: a single hub without
// cluster flags) and waits until every node is a voter in step.
func startCluster(b testing.TB, root string, size int, key []byte) []*node {
	b.Helper()
	if size == 0 {
		return []*node{startNode(b, filepath.Join(root, "single"), "", "", key)}
	}
	var nodes []*node
	for i := range size {
		join := ""
		if i > 0 {
			join = nodes[0].url
		}
		nodes = append(nodes, startNode(b, filepath.Join(root, fmt.Sprintf("n%d", i+1)), fmt.Sprintf("n%d", i+1), join, key))
	}
	waitVoters(b, key, nodes[0].url, size)
	return nodes
}

// ownerCall makes an owner request and decodes a 200's JSON into out.
func ownerCall(key []byte, method, url string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, _ := json.Marshal(in)
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", sas.NewToken(hostName, key, "owner", time.Now().Add(time.Hour)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// eventually retries f every 20 ms until it returns nil or timeout passes.
func eventually(b testing.TB, what string, timeout time.Duration, f func() error) {
	b.Helper()
	var err error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err = f(); err == nil {
			return
		}
	}
	b.Fatalf("%s: not within %s: %v", what, timeout, err)
}

// waitVoters waits until the cluster that url belongs to has n voters,
// each Leader or Follower at the leader's last index.
func waitVoters(b testing.TB, key []byte, url string, n int) {
	b.Helper()
	eventually(b, fmt.Sprintf("%d voters in step", n), 30*time.Second, func() error {
		var m []hub.Member
		if err := ownerCall(key, "GET", url+"/cluster/members", nil, &m); err != nil {
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
			if x.Suffrage == "Voter" && (x.State == "Leader" || x.State == "Follower") && x.LastIndex >= last && last > 0 {
				up++
			}
		}
		if up != n || len(m) != n {
			return fmt.Errorf("members %+v", m)
		}
		return nil
	})
}

// putEdge registers edge device gw and a child device of it at url and
// returns the edge's identity (with its keys).
func putEdge(key []byte, url, gw, child string) (identity.JSON, error) {
	var id identity.JSON
	err := ownerCall(key, "PUT", url+"/devices/"+gw, identity.JSON{DeviceID: gw, Capabilities: &identity.Capabilities{IoTEdge: true}}, &id)
	if err != nil {
		return id, err
	}
	if id.Authentication == nil || id.Authentication.SymmetricKey == nil {
		return id, fmt.Errorf("PUT /devices/%s: no symmetric key in the answer", gw)
	}
	return id, ownerCall(key, "PUT", url+"/devices/"+child, identity.JSON{DeviceID: child, ParentScopes: []string{id.DeviceScope}}, nil)
}

// lastSeq is the highest event seq any of the nodes holds (/healthz is
// node-local: a follower answers with what it applied).
func lastSeq(nodes []string) (uint64, error) {
	var top uint64
	var lastErr error
	for _, u := range nodes {
		resp, err := http.Get(u + "/healthz")
		if err != nil {
			lastErr = err
			continue
		}
		var h struct {
			Events uint64 `json:"events"`
		}
		err = json.NewDecoder(resp.Body).Decode(&h)
		resp.Body.Close()
		if err != nil {
			lastErr = err
			continue
		}
		top = max(top, h.Events)
	}
	if top == 0 && lastErr != nil {
		return 0, lastErr
	}
	return top, nil
}
