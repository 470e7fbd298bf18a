package soakbench

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/edge"
	"github.com/outpost-edge/outpost/cmd/internal/hub"
	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
	"github.com/outpost-edge/outpost/cmd/internal/testbin"
	"github.com/outpost-edge/outpost/store/identity/sas"
)

// hostName is the hub's HostName in every connection string and token.
const hostName = "hub.soak"

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// outpostBinary builds cmd/outpost once per test process.
func outpostBinary(b testing.TB) string { return testbin.Outpost(b) }

func check(b testing.TB, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// proc is an `outpost hub` or `outpost edge` process, its output in
// dir/out.log.
type proc struct {
	name, dir string
	cmd       *exec.Cmd
	exited    chan struct{}
}

// start runs bin with args and env, output to dir/out.log, and stops it
// (SIGINT, then SIGKILL after 20 s) when the benchmark ends.
func start(b testing.TB, name, dir string, env []string, bin string, args ...string) *proc {
	b.Helper()
	check(b, os.MkdirAll(dir, 0o700))
	logf, err := os.Create(filepath.Join(dir, "out.log"))
	check(b, err)
	defer logf.Close()
	p := &proc{name: name, dir: dir, cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	check(b, p.cmd.Start())
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	b.Cleanup(p.stop)
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop ends the process: SIGCONT (it may be frozen), SIGINT, and SIGKILL
// if it has not exited 20 s later.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// alive fails the benchmark with the process's output if it has exited.
func (p *proc) alive(b testing.TB) {
	b.Helper()
	select {
	case <-p.exited:
		out, _ := os.ReadFile(filepath.Join(p.dir, "out.log"))
		b.Fatalf("%s exited: %s", p.name, tail(out, 4000))
	default:
	}
}

func tail(out []byte, n int) []byte {
	if len(out) > n {
		return out[len(out)-n:]
	}
	return out
}

// waitReady waits for dir/ready.json written by p (its pid) and decodes it
// into v.
func waitReady(b testing.TB, p *proc, v any, pidOf func() int) {
	b.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		p.alive(b)
		data, err := os.ReadFile(filepath.Join(p.dir, "ready.json"))
		if err == nil && json.Unmarshal(data, v) == nil && pidOf() == p.pid() {
			return
		}
	}
	b.Fatalf("%s not ready in 60 s", p.name)
}

// hubProc is the running hub.
type hubProc struct {
	*proc
	url    string
	client *hubclient.Client // signed with the owner key
}

func startHub(b testing.TB, bin, dir string) *hubProc {
	b.Helper()
	key := []byte("outpost-soak-benchmark-owner-key")
	p := start(b, "hub", dir, []string{"OUTPOST_HUB_OWNER_KEY=" + base64.StdEncoding.EncodeToString(key)}, bin,
		"hub", "--data", dir, "--listen", "127.0.0.1:0", "--hostname", hostName, "--log-level", "warn")
	var rd hub.Ready
	waitReady(b, p, &rd, func() int { return rd.PID })
	c, err := hubclient.New(sas.ConnString{HostName: hostName, SharedAccessKeyName: "owner", SharedAccessKey: key}, rd.URL)
	check(b, err)
	return &hubProc{proc: p, url: rd.URL, client: c}
}

// edgeProc is the running edge and the addresses from its ready.json.
type edgeProc struct {
	*proc
	ready edge.Ready
}

func startEdge(b testing.TB, bin, dir, hubURL, connString string) *edgeProc {
	b.Helper()
	p := start(b, "edge", dir, []string{"OUTPOST_EDGE_CONNECTION_STRING=" + connString}, bin,
		"edge", "--data", dir, "--hub-url", hubURL, "--mqtt", "127.0.0.1:0", "--api", "127.0.0.1:0", "--log-level", "warn")
	e := &edgeProc{proc: p}
	waitReady(b, p, &e.ready, func() int { return e.ready.PID })
	return e
}

// call makes an owner request to the hub (hubclient, as the CLI does)
// and decodes a JSON answer into out.
func (h *hubProc) call(method, path string, in, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return h.client.Do(ctx, method, path, in, out)
}

// createDevices registers the edge device gw1 and the leaf devices ids
// under it, all with key, and returns gw1's connection string.
func (h *hubProc) createDevices(key []byte, ids []string) (string, error) {
	auth := map[string]any{"symmetricKey": map[string]string{"primaryKey": base64.StdEncoding.EncodeToString(key),
		"secondaryKey": base64.StdEncoding.EncodeToString(key)}}
	var gw struct{ DeviceScope string }
	err := h.call("PUT", "/devices/gw1", map[string]any{"deviceId": "gw1", "capabilities": map[string]bool{"iotEdge": true}, "authentication": auth}, &gw)
	if err != nil {
		return "", err
	}
	if gw.DeviceScope == "" {
		return "", errors.New("the hub gave gw1 no deviceScope")
	}
	for _, id := range ids {
		if err := h.call("PUT", "/devices/"+id, map[string]any{"deviceId": id, "parentScopes": []string{gw.DeviceScope}, "authentication": auth}, nil); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("HostName=%s;DeviceId=gw1;SharedAccessKey=%s", hostName, base64.StdEncoding.EncodeToString(key)), nil
}

// event is an event of the hub's log, the fields the check needs.
type event struct {
	Seq       uint64 `json:"seq"`
	DeviceID  string `json:"deviceId"`
	MessageID string `json:"messageId"`
}

// events calls f for every event of the hub's log, in order.
func (h *hubProc) events(f func(event)) error {
	for from := uint64(1); ; {
		var page []event
		if err := h.call("GET", fmt.Sprintf("/messages/events?from=%d&limit=10000", from), nil, &page); err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		for _, e := range page {
			if e.Seq < from {
				return fmt.Errorf("event seq %d after %d: not increasing", e.Seq, from-1)
			}
			from = e.Seq + 1
			f(e)
		}
	}
}

// eventCount is the number of events in the hub's log (its /healthz).
func (h *hubProc) eventCount() (int64, error) {
	var hz struct{ Events int64 }
	err := h.call("GET", "/healthz", nil, &hz)
	return hz.Events, err
}
