package egress

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/sync/hub"
	"github.com/outpost-edge/outpost/sync/protocol"
)

var ownerKey = []byte("owner-key-for-egress-tests")

// testHub is a hub on a data directory with an edge gw1 and its devices,
// which it can close and open again on the same directory.
type testHub struct {
	t       testing.TB
	dir     string
	h       *hub.Hub
	edgeSeq uint64 // the edge queue's last seq, across reopenings
	devices []string
	// retention of the events (hub.Options.Retention)
	retention time.Duration
}

func openTestHub(t testing.TB, devices ...string) *testHub {
	return openTestHubWith(t, -1, devices...)
}

// openTestHubWith opens a test hub whose events stay for retention
// (negative: forever).
func openTestHubWith(t testing.TB, retention time.Duration, devices ...string) *testHub {
	th := &testHub{t: t, dir: t.TempDir(), devices: devices, retention: retention}
	th.open()
	ctx := context.Background()
	gw, err := th.h.PutDevice(ctx, identity.JSON{DeviceID: "gw1", Capabilities: &identity.Capabilities{IoTEdge: true}})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devices {
		if _, err := th.h.PutDevice(ctx, identity.JSON{DeviceID: d, ParentScopes: []string{gw.DeviceScope}}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(th.close)
	return th
}

func (th *testHub) open() {
	h, err := hub.Open(context.Background(), filepath.Join(th.dir, "store"), hub.Options{HostName: "hub.test", OwnerKey: ownerKey,
		Incarnation: "inc1", DiskDir: th.dir, Retention: th.retention})
	if err != nil {
		th.t.Fatal(err)
	}
	th.h = h
}

func (th *testHub) close() {
	if th.h != nil {
		_ = th.h.Close()
		th.h = nil
	}
}

// appendEvents stores n events from the devices in turn, bodies
// {"temp":T,"n":i}, through the link as gw1 sends them.
func (th *testHub) appendEvents(n int, temp func(i int) int) {
	th.t.Helper()
	f := protocol.Messages{Instance: "edge:gw1.a", Queue: "$upstream/pdefault"}
	for i := range n {
		th.edgeSeq++
		dev := th.devices[int(th.edgeSeq)%len(th.devices)]
		body := fmt.Sprintf(`{"temp":%d,"n":%d}`, temp(int(th.edgeSeq)), th.edgeSeq)
		f.Msgs = append(f.Msgs, protocol.Message{Seq: th.edgeSeq, ID: fmt.Sprint("m", th.edgeSeq), Source: "devices/" + dev, Body: []byte(body),
			Sys: map[string]string{"contentType": "application/json", "contentEncoding": "utf-8", "connectionDeviceId": dev}})
		if len(f.Msgs) == 50 || i == n-1 {
			if _, err := th.h.Messages(context.Background(), "gw1", f); err != nil {
				th.t.Fatal(err)
			}
			f.Msgs = nil
		}
	}
}

// metrics is what the hub's /metrics answers.
func (th *testHub) metrics() string {
	th.t.Helper()
	srv := httptest.NewServer(th.h.Handler())
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/metrics", nil)
	req.Header.Set("Authorization", sas.NewToken("hub.test", ownerKey, "owner", time.Now().Add(time.Hour)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		th.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		th.t.Fatalf("GET /metrics: %s %s", resp.Status, b)
	}
	return string(b)
}

// runRouter routes th's events per the routes file text; stop ends it
// and waits.
func runRouter(t testing.TB, th *testHub, text string, dial DialOptions) (r *Router, stop func()) {
	t.Helper()
	return runRouterOn(t, th, th.h, text, dial)
}

// runRouterOn is runRouter reading and committing through log.
func runRouterOn(t testing.TB, th *testHub, log Log, text string, dial DialOptions) (r *Router, stop func()) {
	t.Helper()
	cfg, routes, err := ParseConfig("routes.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	eps := map[string]Endpoint{}
	for _, ec := range cfg.Endpoints {
		if eps[ec.Name], err = Dial(ec, dial); err != nil {
			t.Fatal(err)
		}
	}
	r, err = New(Options{Log: log, Endpoints: eps, Routes: routes, MaxBackoff: time.Second, Poll: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	th.h.AddMetrics(r.WriteMetrics)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
			_ = r.Close()
		})
	}
	t.Cleanup(stop)
	return r, stop
}

// waitFor polls cond until it holds, failing after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cursor is the lane's delivered cursor.
func (r *Router) cursorOf(name string) uint64 {
	for _, l := range r.lanes {
		if l.name == name {
			return l.cursor.Load()
		}
	}
	return 0
}

// natsServer is a nats-server process with JetStream, on a random port
// of 127.0.0.1, which can be stopped and started again on that port.
type natsServer struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
	URL  string
}

// requireTool finds a binary the test needs: missing, the test fails in
// CI (and with OUTPOST_BROWSER_TESTS=1), where .ci/run installs it, and
// is skipped elsewhere.
func requireTool(t testing.TB, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("OUTPOST_BROWSER_TESTS") == "1" || os.Getenv("CI") != "" {
			t.Fatalf("%s is missing (.ci/run installs Debian's %s)", name, pkg)
		}
		t.Skipf("%s is not installed (Debian: apt install %s); in CI or with OUTPOST_BROWSER_TESTS=1 this fails", name, pkg)
	}
	return path
}

func startNATS(t testing.TB) *natsServer {
	t.Helper()
	s := &natsServer{t: t, bin: requireTool(t, "nats-server", "nats-server"), dir: t.TempDir(), port: -1}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *natsServer) start() {
	s.t.Helper()
	ports := filepath.Join(s.dir, "ports")
	_ = os.RemoveAll(ports)
	if err := os.MkdirAll(ports, 0o700); err != nil {
		s.t.Fatal(err)
	}
	s.cmd = exec.Command(s.bin, "-js", "-a", "127.0.0.1", "-p", fmt.Sprint(s.port), "-sd", filepath.Join(s.dir, "js"),
		"--ports_file_dir", ports, "-l", filepath.Join(s.dir, "nats.log"))
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	waitFor(s.t, 15*time.Second, "nats-server's ports file", func() bool {
		files, _ := filepath.Glob(filepath.Join(ports, "*.ports"))
		if len(files) == 0 {
			return false
		}
		data, err := os.ReadFile(files[0])
		var p struct{ Nats []string }
		if err != nil || json.Unmarshal(data, &p) != nil || len(p.Nats) == 0 {
			return false
		}
		s.URL = p.Nats[0]
		_, err = fmt.Sscanf(s.URL[strings.LastIndex(s.URL, ":")+1:], "%d", &s.port)
		return err == nil
	})
}

func (s *natsServer) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(os.Interrupt)
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// stream creates a JetStream stream capturing subject.
func (s *natsServer) stream(subject string) jetstream.Stream {
	s.t.Helper()
	nc, err := nats.Connect(s.URL)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		s.t.Fatal(err)
	}
	st, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "OUTPOST", Subjects: []string{subject}, Storage: jetstream.FileStorage})
	if err != nil {
		s.t.Fatal(err)
	}
	return st
}
