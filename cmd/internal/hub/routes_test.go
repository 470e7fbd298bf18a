package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// runHub runs `outpost hub` on dir with cfg's routes until the returned
// stop is called; it waits for ready.json.
func runHub(t *testing.T, dir, routes string) (url string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{DataDir: dir, Listen: "127.0.0.1:0", Routes: routes, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Stdout: io.Discard})
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("hub: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var r Ready
		if data, err := os.ReadFile(filepath.Join(dir, "ready.json")); err == nil && json.Unmarshal(data, &r) == nil {
			return r.URL, stop
		}
		select {
		case err := <-done:
			t.Fatalf("hub stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatal("hub not ready in 20s")
	return "", nil
}

// hubClient talks to a hub as its owner and as the edge gw1.
type hubClient struct {
	t        *testing.T
	url, dir string
	host     string
	owner    []byte
	gwKey    []byte
	seq      uint64
}

func (c *hubClient) do(method, path, auth, ctype string, body []byte) (int, []byte) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.url+path, bytes.NewReader(body))
	req.Header.Set("Authorization", auth)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

func (c *hubClient) ownerToken() string {
	return sas.NewToken(c.host, c.owner, "owner", time.Now().Add(time.Hour))
}

// connect reads the owner key the hub wrote and registers the edge gw1.
func (c *hubClient) connect(url string) {
	c.t.Helper()
	c.url = url
	data, err := os.ReadFile(filepath.Join(c.dir, ownerFile))
	if err != nil {
		c.t.Fatal(err)
	}
	cs, err := sas.ParseConnString(string(data))
	if err != nil {
		c.t.Fatal(err)
	}
	c.host, c.owner = cs.HostName, cs.SharedAccessKey
	if c.gwKey == nil {
		c.register()
	}
}

// register makes the edge gw1.
func (c *hubClient) register() {
	c.t.Helper()
	code, body := c.do("PUT", "/devices/gw1", c.ownerToken(), "application/json", []byte(`{"deviceId":"gw1","capabilities":{"iotEdge":true}}`))
	var dev struct {
		Authentication struct{ SymmetricKey struct{ PrimaryKey []byte } }
	}
	if code != 200 || json.Unmarshal(body, &dev) != nil || len(dev.Authentication.SymmetricKey.PrimaryKey) == 0 {
		c.t.Fatalf("PUT /devices/gw1: %d %s", code, body)
	}
	c.gwKey = dev.Authentication.SymmetricKey.PrimaryKey
}

// send posts n events from gw1 on the link.
func (c *hubClient) send(n int) {
	c.t.Helper()
	f := protocol.Messages{Instance: "edge:gw1.a", Queue: "$upstream/pdefault"}
	for range n {
		c.seq++
		f.Msgs = append(f.Msgs, protocol.Message{Seq: c.seq, Source: "devices/gw1", Body: []byte(fmt.Sprintf(`{"n":%d}`, c.seq))})
	}
	body, enc, err := protocol.Encode(f)
	if err != nil {
		c.t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", c.url+protocol.PathMessages, bytes.NewReader(body))
	req.Header.Set("Authorization", sas.NewToken(c.host+"/devices/gw1", c.gwKey, "", time.Now().Add(time.Hour)))
	req.Header.Set("Content-Type", protocol.ContentType)
	if enc != "" {
		req.Header.Set("Content-Encoding", enc)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		c.t.Fatalf("POST messages: %s %s", resp.Status, data)
	}
}

// webhook is a TLS webhook that records the seqs it took; while hold is
// set it keeps requests waiting (until the client gives up).
type webhook struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seqs []uint64
	hold bool
	held chan struct{} // a request is being held
}

func newWebhook(t *testing.T) *webhook {
	w := &webhook{held: make(chan struct{}, 100)}
	w.srv = httptest.NewTLSServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var evs []struct {
			Seq      uint64   `json:"seq"`
			EdgePath []string `json:"edgePath"`
		}
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &evs); err != nil || r.Header.Get("Authorization") != "Bearer t0ken" {
			http.Error(rw, "bad request", 400)
			return
		}
		w.mu.Lock()
		hold := w.hold
		w.mu.Unlock()
		if hold {
			w.held <- struct{}{}
			<-r.Context().Done()
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, e := range evs {
			if !slices.Equal(e.EdgePath, []string{"gw1"}) {
				t.Errorf("event %d: edgePath %v, want [gw1]", e.Seq, e.EdgePath)
			}
			w.seqs = append(w.seqs, e.Seq)
		}
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhook) distinct() []uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := map[uint64]bool{}
	var out []uint64
	for _, s := range w.seqs {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func writeRoutes(t *testing.T, dir, text string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, "routes.toml")
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRoutesAcrossHubRestart: `outpost hub --routes` run twice on one
// data directory, stopped while a webhook delivery is in flight, delivers
// every event to the webhook (its CA and headers from the routes file),
// de-duplicated by seq exactly once and in order, resuming from the
// committed cursor; /metrics shows the endpoint's cursor.
func TestRoutesAcrossHubRestart(t *testing.T) {
	wh := newWebhook(t)
	cfgDir := t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: wh.srv.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(cfgDir, "hook-ca.pem"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	routes := writeRoutes(t, cfgDir, fmt.Sprintf(`
[[endpoint]]
name = "hook"
type = "webhook"
url = "%s/ingest"
ca = "hook-ca.pem"
headers = { Authorization = "Bearer t0ken" }
[[route]]
name = "all"
query = "FROM /messages/* INTO hook"
`, wh.srv.URL), 0o600)
	dir := filepath.Join(t.TempDir(), "hub")
	c := &hubClient{t: t, dir: dir}
	url, stop := runHub(t, dir, routes)
	c.connect(url)
	c.send(50)
	waitUntil(t, "the first 50 events at the webhook", func() bool { return len(wh.distinct()) == 50 })
	wh.mu.Lock()
	wh.hold = true
	wh.mu.Unlock()
	c.send(50)
	<-wh.held // a delivery is in flight: stop the hub now
	stop()
	wh.mu.Lock()
	wh.hold = false
	wh.mu.Unlock()
	url, _ = runHub(t, dir, routes)
	c.connect(url)
	c.send(100)
	waitUntil(t, "all 200 events at the webhook", func() bool { return len(wh.distinct()) == 200 })
	got := wh.distinct()
	for i, s := range got {
		if s != uint64(i+1) {
			t.Fatalf("webhook took %v: want 1..200 in order", got)
		}
	}
	waitUntil(t, "the cursor in /metrics", func() bool {
		_, m := c.do("GET", "/metrics", c.ownerToken(), "", nil)
		return strings.Contains(string(m), `outpost_hub_route_cursor{endpoint="hook"} 200`) &&
			strings.Contains(string(m), `outpost_hub_route_backlog{endpoint="hook"} 0`)
	})
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRoutesFileRefused: the hub does not start with a routes file its
// group or others can read, nor with one whose route names no endpoint or
// whose condition is malformed; the error names the file, the route, the
// position and what to do.
func TestRoutesFileRefused(t *testing.T) {
	ep := "[[endpoint]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"https://127.0.0.1:1/x\"\nheaders = { Authorization = \"Bearer s\" }\n"
	for _, c := range []struct {
		name, text string
		mode       os.FileMode
		want       []string
	}{
		{"world-readable", ep + "[[route]]\nname = \"r\"\nquery = \"FROM /* INTO hook\"\n", 0o644,
			[]string{"--routes: ", "routes.toml holds a secret but is readable by its group or by others (mode 0644); run: chmod 600 "}},
		{"group-readable", ep + "[[route]]\nname = \"r\"\nquery = \"FROM /* INTO hook\"\n", 0o640, []string{"chmod 600"}},
		{"unknown endpoint", ep + "[[route]]\nname = \"r\"\nquery = \"FROM /* INTO kafka\"\n", 0o600,
			[]string{"routes.toml: route \"r\": INTO kafka: no endpoint of that name"}},
		{"bad condition", ep + "[[route]]\nname = \"hot\"\nquery = \"FROM /messages/* WHERE $body.t > INTO hook\"\n", 0o600,
			[]string{"routes.toml: route \"hot\": at offset 33 near \"INTO\": "}},
		{"missing CA file", strings.Replace(ep, "headers", "ca = \"nope.pem\"\nheaders", 1) + "[[route]]\nname = \"r\"\nquery = \"FROM /* INTO hook\"\n", 0o600,
			[]string{"routes.toml: endpoint \"hook\": ca: ", "nope.pem"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeRoutes(t, t.TempDir(), c.text, c.mode)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := Run(ctx, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Routes: path, Logger: slog.New(slog.DiscardHandler), Stdout: io.Discard})
			if err == nil {
				t.Fatal("the hub started")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestRoutesOnClusterLeaderOnly: on a cluster of three nodes with the same
// routes file only the leader delivers (each event reaches the webhook
// once), the cursor it commits is replicated (a follower's /metrics shows
// it), and when the leader stops the new one resumes from that cursor.
func TestRoutesOnClusterLeaderOnly(t *testing.T) {
	hook := &webhook{held: make(chan struct{}, 1)}
	var mu sync.Mutex
	copies := map[uint64]int{}
	hook.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var evs []struct{ Seq uint64 }
		body, _ := io.ReadAll(r.Body)
		if json.Unmarshal(body, &evs) != nil {
			http.Error(w, "bad", 400)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, e := range evs {
			copies[e.Seq]++
		}
	}))
	defer hook.srv.Close()
	routes := writeRoutes(t, t.TempDir(), fmt.Sprintf("[[endpoint]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"%s/in\"\n[[route]]\nname = \"r\"\nquery = \"FROM /messages/* INTO hook\"\n", hook.srv.URL), 0o600)
	root := t.TempDir()
	start := func(id, join string, key []byte) *testNode {
		cfg := nodeConfig(filepath.Join(root, id), id, join, key)
		cfg.Routes = routes
		return startNodeWith(t, cfg)
	}
	n1 := start("n1", "", nil)
	key := ownerKeyOf(t, n1.dir)
	nodes := []*testNode{n1, start("n2", n1.ready.URL, key), start("n3", n1.ready.URL, key)}
	waitVoters(t, key, n1.ready.URL, 3)
	c := &hubClient{t: t, url: n1.ready.URL, host: clusterHost, owner: key}
	eventually(t, "gw1 registered", func() error {
		if code, body := c.do("PUT", "/devices/gw1", c.ownerToken(), "application/json", []byte(`{"deviceId":"gw1","capabilities":{"iotEdge":true}}`)); code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	c.register()
	c.send(50)
	seen := func(n uint64) func() error {
		return func() error {
			mu.Lock()
			defer mu.Unlock()
			for s := uint64(1); s <= n; s++ {
				if copies[s] == 0 {
					return fmt.Errorf("event %d not delivered", s)
				}
			}
			return nil
		}
	}
	eventually(t, "50 events at the webhook", seen(50))
	var leader *testNode
	for _, n := range nodes {
		eventually(t, "the cursor committed on "+n.id, func() error {
			_, m := request(t, key, "GET", n.ready.URL+"/metrics", "", nil)
			if !strings.Contains(string(m), `outpost_hub_route_cursor{endpoint="hook"} 50`) {
				return fmt.Errorf("no cursor 50 in /metrics")
			}
			return nil
		})
		ms, err := members(t, key, n.ready.URL)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.Leader && m.ID == n.id {
				leader = n
			}
		}
	}
	if leader == nil {
		t.Fatal("no leader")
	}
	leader.stop()
	var rest *testNode
	for _, n := range nodes {
		if n != leader {
			rest = n
		}
	}
	c.url = rest.ready.URL
	eventually(t, "events sent after the leader stopped", func() error {
		f := protocol.Messages{Instance: "edge:gw1.a", Queue: "$upstream/pdefault"}
		for i := uint64(51); i <= 100; i++ {
			f.Msgs = append(f.Msgs, protocol.Message{Seq: i, Source: "devices/gw1", Body: []byte("x")})
		}
		body, enc, _ := protocol.Encode(f)
		req, _ := http.NewRequest("POST", c.url+protocol.PathMessages, bytes.NewReader(body))
		req.Header.Set("Authorization", sas.NewToken(c.host+"/devices/gw1", c.gwKey, "", time.Now().Add(time.Hour)))
		req.Header.Set("Content-Type", protocol.ContentType)
		if enc != "" {
			req.Header.Set("Content-Encoding", enc)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("POST messages: %s", resp.Status)
		}
		return nil
	})
	eventually(t, "100 events at the webhook", seen(100))
	mu.Lock()
	defer mu.Unlock()
	for s, n := range copies {
		if n != 1 {
			t.Errorf("event %d delivered %d times: only the leader delivers, and the next one from the replicated cursor", s, n)
		}
	}
}
