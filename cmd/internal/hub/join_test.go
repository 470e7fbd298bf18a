package hub

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A join request is bound to the owner key and to its content: another key,
// a changed field or an old request is refused.
func TestJoinProof(t *testing.T) {
	key, other := []byte("the-owner-key"), []byte("another-key")
	j := newJoinRequest("add", "n2", "10.0.0.2:7000", "https://10.0.0.2:8443", key)
	now := time.Now()
	if err := j.check(key, now); err != nil {
		t.Fatalf("a proper request: %v", err)
	}
	if err := j.check(other, now); err == nil || !strings.Contains(err.Error(), "owner key") {
		t.Errorf("another key: %v", err)
	}
	moved := j
	moved.Raft = "203.0.113.9:7000"
	if err := moved.check(key, now); err == nil {
		t.Error("a request whose raft address was changed on the way was taken")
	}
	if err := j.check(key, now.Add(10*time.Minute)); err == nil || !strings.Contains(err.Error(), "clock") {
		t.Errorf("an old request: %v", err)
	}
	bad := newJoinRequest("add", "n2/../x", "a:1", "http://a", key)
	if err := bad.check(key, now); err == nil {
		t.Error("a node id with a slash was taken")
	}
}

// Only the holder of the owner key opens a sealed bundle, and only for the
// nonce of its own request.
func TestSealedBundle(t *testing.T) {
	key := []byte("the-owner-key")
	sealed, err := seal(key, "nonce-1", []byte("the cluster CA"))
	if err != nil {
		t.Fatal(err)
	}
	if plain, err := unseal(key, "nonce-1", sealed); err != nil || string(plain) != "the cluster CA" {
		t.Fatalf("unseal: %q %v", plain, err)
	}
	if _, err := unseal([]byte("another-key"), "nonce-1", sealed); err == nil {
		t.Error("another key opened the bundle")
	}
	if _, err := unseal(key, "nonce-2", sealed); err == nil {
		t.Error("the bundle opened for another request's nonce")
	}
}

// A running node refuses a join made without the owner key: no CA, and
// no new member.
func TestJoinWithoutOwnerKeyRefused(t *testing.T) {
	root := t.TempDir()
	n1 := startNode(t, filepath.Join(root, "n1"), "n1", "", nil)
	key := ownerKeyOf(t, n1.dir)
	waitVoters(t, key, n1.ready.URL, 1)
	for _, step := range []string{"ca", "add"} {
		j := newJoinRequest(step, "intruder", "127.0.0.1:1", "http://127.0.0.1:1", []byte("guessed"))
		body, _ := json.Marshal(j)
		resp, err := http.Post(n1.ready.URL+joinPath, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var a joinAnswer
		_ = json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if resp.StatusCode != 403 || a.Sealed != "" {
			t.Fatalf("step %s with a wrong key: %d %+v, want 403 and nothing", step, resp.StatusCode, a)
		}
	}
	m, err := members(t, key, n1.ready.URL)
	if err != nil || len(m) != 1 {
		t.Fatalf("members after the refused joins: %+v %v", m, err)
	}
}

// A join request is taken once: sent again (a host in the middle replaying
// it), it is refused and nothing is handed out.
func TestJoinReplayRefused(t *testing.T) {
	n1 := startNode(t, filepath.Join(t.TempDir(), "n1"), "n1", "", nil)
	key := ownerKeyOf(t, n1.dir)
	waitVoters(t, key, n1.ready.URL, 1)
	body, _ := json.Marshal(newJoinRequest("ca", "n2", "", "", key))
	for i, want := range []int{200, 403} {
		resp, err := http.Post(n1.ready.URL+joinPath, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var a joinAnswer
		_ = json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if resp.StatusCode != want || (a.Sealed != "") != (want == 200) {
			t.Fatalf("request %d: %d sealed=%t, want %d", i+1, resp.StatusCode, a.Sealed != "", want)
		}
	}
}

// A cluster node listens on an address the others can reach: on every
// interface its URL would name localhost, where the others would forward.
func TestClusterNodeRefusesUnspecifiedListen(t *testing.T) {
	cfg := nodeConfig(filepath.Join(t.TempDir(), "n1"), "n1", "", nil)
	cfg.Listen = ":0"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Run(ctx, cfg); err == nil || !strings.Contains(err.Error(), "not on every interface") {
		t.Fatalf("a node on :0: %v, want a refusal", err)
	}
}

// The join endpoint takes no token, so a caller that sends its body slowly
// is cut at --request-timeout, as on the hub's other endpoints.
func TestJoinSlowBodyCut(t *testing.T) {
	cfg := nodeConfig(filepath.Join(t.TempDir(), "n1"), "n1", "", nil)
	cfg.RequestTimeout = time.Second
	n1 := startNodeWith(t, cfg)
	waitVoters(t, ownerKeyOf(t, n1.dir), n1.ready.URL, 1)
	conn, err := net.Dial("tcp", strings.TrimPrefix(n1.ready.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: n1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", joinPath)
	start := time.Now()
	_ = conn.SetReadDeadline(start.Add(15 * time.Second))
	_, _ = io.Copy(io.Discard, conn) // until the node closes the connection
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("a join request whose body stalls held its connection %s, want about --request-timeout (1s)", d)
	}
}

// A node the cluster refuses to add (here: it holds the cluster CA from an
// earlier start, but another owner key) stops and says why, rather than
// asking again forever.
func TestJoinRefusedStops(t *testing.T) {
	root := t.TempDir()
	n1 := startNode(t, filepath.Join(root, "n1"), "n1", "", nil)
	waitVoters(t, ownerKeyOf(t, n1.dir), n1.ready.URL, 1)
	if err := os.CopyFS(filepath.Join(root, "n2", clusterDir), os.DirFS(filepath.Join(n1.dir, clusterDir))); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Run(ctx, nodeConfig(filepath.Join(root, "n2"), "n2", n1.ready.URL, []byte("not-the-cluster-key")))
	if err == nil || !strings.Contains(err.Error(), "the cluster refused this node") || !strings.Contains(err.Error(), "owner key") {
		t.Fatalf("a join with another owner key: %v", err)
	}
}

// A node started again with another owner key than the cluster's stops
// and says why.
func TestNodeWithAnotherOwnerKeyStops(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n1")
	n1 := startNode(t, dir, "n1", "", nil)
	key := ownerKeyOf(t, dir)
	waitVoters(t, key, n1.ready.URL, 1)
	// The node records the owner key, then its own address, in the state.
	eventually(t, "the node's records in the cluster's state", func() error {
		m, err := members(t, key, n1.ready.URL)
		if err == nil && (len(m) != 1 || m[0].API == "") {
			err = fmt.Errorf("members %+v", m)
		}
		return err
	})
	n1.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Run(ctx, Config{DataDir: dir, Listen: "127.0.0.1:0", Hostname: clusterHost, NodeID: "n1", Raft: "127.0.0.1:0",
		OwnerKey: base64.StdEncoding.EncodeToString([]byte("not-the-cluster-key")), Logger: testLogger(), Stdout: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "owner key is not the cluster's") {
		t.Fatalf("another owner key: %v", err)
	}
}
