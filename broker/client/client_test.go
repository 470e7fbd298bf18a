package client_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/broker"
	"github.com/outpost-edge/outpost/broker/client"
	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/store/twin"
)

// Telemetry with application and system properties is stored in the
// $upstream queue by the time SendEvent returns, properties intact
// (the bag encoding is what the broker's parser reads).
func TestSendEventStored(t *testing.T) {
	h := newHarness(t, "", nil)
	c := h.newClient("dev1")
	h.connect(c)
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	props := map[string]string{"temp": "21.5", "with space": "a b+c", "slash/amp&eq=": "x/y&z=1%", "unicode": "ü€"}
	err := c.SendEvent(timeout(t), client.Message{
		Body: []byte(`{"t":21.5}`), Properties: props, MessageID: "m-1", CorrelationID: "c-1",
		ContentType: "application/json", ContentEncoding: "utf-8", ExpiryTime: exp,
	})
	check(t, err)
	msgs, err := h.queue("$upstream").Read(0, 10)
	check(t, err)
	if len(msgs) != 1 {
		t.Fatalf("upstream holds %d messages right after SendEvent returned, want 1", len(msgs))
	}
	m := msgs[0]
	if m.ID != "m-1" || string(m.Body) != `{"t":21.5}` || m.Source != "devices/dev1" {
		t.Errorf("stored %+v", m)
	}
	for k, v := range props {
		if m.Props[k] != v {
			t.Errorf("property %q = %q, want %q (all: %v)", k, m.Props[k], v, m.Props)
		}
	}
	wantSys := map[string]string{"correlationId": "c-1", "contentType": "application/json", "contentEncoding": "utf-8",
		"connectionDeviceId": "dev1", "absoluteExpiryTime": exp.Format(time.RFC3339Nano)}
	for k, v := range wantSys {
		if m.Sys[k] != v {
			t.Errorf("system property %s = %q, want %q (all: %v)", k, m.Sys[k], v, m.Sys)
		}
	}
	if m.TTL <= 0 || m.TTL > time.Hour {
		t.Errorf("TTL %v: $.exp not honoured", m.TTL)
	}

	// Concurrent senders: every message acknowledged is stored.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if err := c.SendEvent(timeout(t), client.Message{Body: []byte(fmt.Sprint(i)), MessageID: fmt.Sprint("c-", i)}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if d := h.queue("$upstream").Stats().Depth; d != 21 {
		t.Errorf("depth %d after 21 acknowledged sends", d)
	}
	// Reserved names are refused before anything is sent.
	if err := c.SendEvent(timeout(t), client.Message{Properties: map[string]string{"$.on": "x"}}); !errors.Is(err, client.ErrBadMessage) {
		t.Errorf("a system property name as an application property: %v", err)
	}
	if err := c.SendOutput(timeout(t), "out", client.Message{}); !errors.Is(err, client.ErrBadMessage) {
		t.Errorf("SendOutput from a device: %v", err)
	}
}

// A module output goes through a route to another module's input handler,
// with its properties and the sender; a handler may call the client
// (here: PatchReported, whose answer arrives while the handler runs).
func TestOutputRoutedToInput(t *testing.T) {
	routes := `{"routes":{"ab":"FROM /messages/modules/a/outputs/out1 INTO BrokeredEndpoint(\"/modules/b/inputs/in1\")",
		"ab2":"FROM /messages/modules/a/outputs/out2 INTO BrokeredEndpoint(\"/modules/b/inputs/in2\")"}}`
	h := newHarness(t, routes, nil)
	a, b := h.newClient(edgeID+"/a"), h.newClient(edgeID+"/b")
	other := make(chan client.Message, 10)
	b.OnAnyInput(func(m client.Message) { other <- m })
	got := make(chan client.Message, 10)
	b.OnInput("in1", func(m client.Message) {
		if _, err := b.PatchReported(timeout(t), map[string]any{"last": m.MessageID}); err != nil {
			t.Errorf("PatchReported inside an input handler: %v", err)
		}
		got <- m
	})
	h.connect(a)
	h.connect(b)
	for i := range 5 {
		check(t, a.SendOutput(timeout(t), "out1", client.Message{Body: []byte(fmt.Sprint(i)), MessageID: fmt.Sprint("id-", i), Properties: map[string]string{"k": "v w"}}))
	}
	// Not routed: another output.
	check(t, a.SendOutput(timeout(t), "other", client.Message{Body: []byte("x")}))
	for i := range 5 {
		m := recv(t, got)
		if string(m.Body) != fmt.Sprint(i) || m.MessageID != fmt.Sprint("id-", i) || m.InputName != "in1" ||
			m.Properties["k"] != "v w" || m.ConnectionDeviceID != edgeID || m.ConnectionModuleID != "a" {
			t.Fatalf("input %d: %+v", i, m)
		}
	}
	nothing(t, got, 200*time.Millisecond)
	eventually(t, "the input queue to be acknowledged", func() bool { return h.queue("modules/b/inputs/in1").Stats().Depth == 0 })
	// An input without its own handler goes to the catch-all.
	check(t, a.SendOutput(timeout(t), "out2", client.Message{Body: []byte("two")}))
	if m := recv(t, other); m.InputName != "in2" || string(m.Body) != "two" {
		t.Errorf("catch-all got %+v", m)
	}
	nothing(t, other, 100*time.Millisecond)
	tw, err := b.GetTwin(timeout(t))
	check(t, err)
	if tw.Reported["last"] != "id-4" {
		t.Errorf("reported %v", tw.Reported)
	}
}

// An input is acknowledged only after its handler returned: while the
// handler runs the message stays queued, and if the connection drops
// before the handler returns, the message is delivered again.
func TestInputRedeliveredWhenNotAcked(t *testing.T) {
	routes := `{"routes":{"ab":"FROM /messages/modules/a/* INTO BrokeredEndpoint(\"/modules/b/inputs/in1\")"}}`
	h := newHarness(t, routes, nil)
	a, b := h.newClient(edgeID+"/a"), h.newClient(edgeID+"/b")
	started := make(chan string, 10)
	release := make(chan struct{})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(free) // before b.Close, which waits for the handler
	var calls atomic.Int32
	b.OnInput("in1", func(m client.Message) {
		started <- m.MessageID
		if calls.Add(1) == 1 {
			<-release
		}
	})
	h.connect(a)
	h.connect(b)
	check(t, a.SendOutput(timeout(t), "o", client.Message{Body: []byte("x"), MessageID: "only"}))
	if id := recv(t, started); id != "only" {
		t.Fatalf("handler got %q", id)
	}
	time.Sleep(200 * time.Millisecond)
	if d := h.queue("modules/b/inputs/in1").Stats().Depth; d != 1 {
		t.Fatalf("queue depth %d while the handler runs: acknowledged before the handler returned", d)
	}
	// The module's connection dies in the middle of the handler.
	n := len(h.auth.passwordsOf(edgeID + "/b"))
	h.b.Disconnect(edgeID+"/b", "test: connection cut")
	eventually(t, "the client to reconnect", func() bool { return len(h.auth.passwordsOf(edgeID+"/b")) > n })
	free()
	if id := recv(t, started); id != "only" {
		t.Fatalf("redelivered %q", id)
	}
	eventually(t, "the redelivered input to be acknowledged", func() bool { return h.queue("modules/b/inputs/in1").Stats().Depth == 0 })
	if n := calls.Load(); n != 2 {
		t.Errorf("handler called %d times, want 2 (once cut off, once redelivered)", n)
	}
}

// GetTwin and PatchReported round trips; a non-200 answer is a
// *StatusError with status and message.
func TestTwinGetAndPatchReported(t *testing.T) {
	h := newHarness(t, "", nil)
	c := h.newClient(edgeID + "/a")
	h.connect(c)
	v1, err := c.PatchReported(timeout(t), map[string]any{"fw": "1.0", "n": 3})
	check(t, err)
	v2, err := c.PatchReported(timeout(t), []byte(`{"fw":"1.1","n":null}`))
	check(t, err)
	if v1 < 2 || v2 != v1+1 {
		t.Errorf("reported versions %d then %d", v1, v2)
	}
	tw, err := c.GetTwin(timeout(t))
	check(t, err)
	if tw.Reported["fw"] != "1.1" || tw.Reported["n"] != nil || tw.ReportedVersion != v2 || tw.Desired == nil {
		t.Errorf("twin %+v", tw)
	}
	if _, ok := tw.Reported["$version"]; ok {
		t.Error("$version left in the reported map")
	}
	_, err = c.PatchReported(timeout(t), map[string]any{"bad.key": 1})
	var se *client.StatusError
	if !errors.As(err, &se) || se.Status != 400 || !strings.Contains(se.Message, "bad.key") {
		t.Errorf("invalid patch: %v", err)
	}
	if _, err := c.PatchReported(timeout(t), []int{1}); !errors.Is(err, client.ErrBadMessage) {
		t.Errorf("non-object patch: %v", err)
	}

	// A twin the edge has not received from the hub is 503, not empty.
	h2 := newHarness(t, "", func(o *broker.Options) { o.StandaloneTwins = false })
	c2 := h2.newClient(edgeID + "/a")
	h2.connect(c2)
	_, err = c2.GetTwin(timeout(t))
	if !errors.As(err, &se) || se.Status != 503 || se.Message == "" {
		t.Errorf("GET of an unsynchronised twin: %v", err)
	}
}

type desired struct {
	doc     map[string]any
	version int64
}

// Desired changes: the full desired properties on connect, patches while
// connected, a change made while disconnected delivered after the
// reconnection by the GET rule, and patches not newer than the last
// delivered ignored.
func TestDesiredProperties(t *testing.T) {
	h := newHarness(t, "", nil)
	id := edgeID + "/a"
	h.patchDesired(id, `{"interval":5,"mode":"fast"}`)
	c := h.newClient(id)
	got := make(chan desired, 10)
	c.OnDesired(func(d map[string]any, v int64) { got <- desired{d, v} })
	h.connect(c)
	first := recv(t, got)
	if first.doc["interval"] != 5.0 || first.doc["mode"] != "fast" || first.version < 1 {
		t.Fatalf("on connect: %+v", first)
	}
	if _, ok := first.doc["$version"]; ok {
		t.Error("$version left in the desired map")
	}

	h.patchDesired(id, `{"interval":7}`)
	p := recv(t, got)
	if p.doc["interval"] != 7.0 || len(p.doc) != 1 || p.version <= first.version {
		t.Fatalf("patch: %+v after %+v", p, first)
	}

	// An old patch (a replay, or one overtaken by a GET) is ignored.
	h.b.NotifyDesired([]twin.Change{{ID: id, Section: crdt.Desired, Version: p.version, Patch: map[string]any{"interval": 1}}})
	h.b.NotifyDesired([]twin.Change{{ID: id, Section: crdt.Desired, Version: first.version, Patch: map[string]any{"interval": 2}}})
	nothing(t, got, 300*time.Millisecond)

	// Changed while the module is away: refuse its reconnection, cut it,
	// change the twin, let it back in.
	h.auth.setRefused(id, true)
	h.b.Disconnect(id, "test")
	eventually(t, "the client to notice", func() bool { return !c.IsConnected() })
	h.patchDesired(id, `{"interval":9,"mode":null}`)
	nothing(t, got, 200*time.Millisecond)
	h.auth.setRefused(id, false)
	full := recv(t, got)
	if full.doc["interval"] != 9.0 || full.doc["mode"] != nil || full.version <= p.version {
		t.Fatalf("after reconnecting: %+v (last %d)", full, p.version)
	}
	if _, ok := full.doc["mode"]; ok {
		t.Errorf("deleted property in the full desired section: %v", full.doc)
	}
	// A plain reconnection with nothing new delivers nothing.
	h.cut(c, id)
	nothing(t, got, 300*time.Millisecond)
	// Patches keep flowing on the new connection.
	h.patchDesired(id, `{"interval":10}`)
	if p := recv(t, got); p.doc["interval"] != 10.0 {
		t.Fatalf("patch after reconnecting: %+v", p)
	}
}

// Direct methods: a handler's status and payload come back to the caller;
// an unknown method is 404; handlers stay after a reconnection.
func TestDirectMethod(t *testing.T) {
	h := newHarness(t, "", nil)
	id := edgeID + "/a"
	c := h.newClient(id)
	c.OnMethod("echo", func(p []byte) (int, []byte) { return 201, []byte(`{"echo":` + string(p) + `}`) })
	c.OnMethod("quiet", func([]byte) (int, []byte) { return 200, nil })
	h.connect(c)
	r, err := h.b.InvokeMethod(h.ctx, id, "echo", []byte(`"hi"`), 5*time.Second)
	if err != nil || r.Status != 201 || string(r.Payload) != `{"echo":"hi"}` {
		t.Fatalf("echo: %+v %v", r, err)
	}
	r, err = h.b.InvokeMethod(h.ctx, id, "quiet", nil, 5*time.Second)
	if err != nil || r.Status != 200 || string(r.Payload) != "null" {
		t.Fatalf("quiet: %+v %s %v", r, r.Payload, err)
	}
	r, err = h.b.InvokeMethod(h.ctx, id, "nope", nil, 5*time.Second)
	if err != nil || r.Status != 404 || string(r.Payload) != `{"message":"method nope not implemented"}` {
		t.Fatalf("unknown method: %+v %s %v", r, r.Payload, err)
	}
	c.OnAnyMethod(func(name string, _ []byte) (int, []byte) { return 202, []byte(`"` + name + `"`) })
	r, err = h.b.InvokeMethod(h.ctx, id, "nope", nil, 5*time.Second)
	if err != nil || r.Status != 202 || string(r.Payload) != `"nope"` {
		t.Fatalf("default handler: %+v %s %v", r, r.Payload, err)
	}
}

// Cloud-to-device messages reach a device's handler with their properties.
func TestC2D(t *testing.T) {
	h := newHarness(t, "", nil)
	check(t, h.b.SendC2D(h.ctx, "dev1", queue.Message{ID: "c2d-1", Props: map[string]string{"cmd": "reboot now"}, Body: []byte("go")}))
	c := h.newClient("dev1")
	got := make(chan client.Message, 10)
	c.OnC2D(func(m client.Message) { got <- m })
	h.connect(c)
	m := recv(t, got)
	if m.MessageID != "c2d-1" || m.Properties["cmd"] != "reboot now" || string(m.Body) != "go" {
		t.Fatalf("C2D %+v", m)
	}
	check(t, h.b.SendC2D(h.ctx, "dev1", queue.Message{Body: []byte("second")}))
	if m := recv(t, got); string(m.Body) != "second" {
		t.Fatalf("second C2D %+v", m)
	}
	eventually(t, "C2D acknowledged", func() bool { return h.queue("c2d/dev1").Stats().Depth == 0 })
}

// When the broker drops the connection the client comes back by itself,
// subscribes again (the broker's new session knows nothing), and every
// connection presents a new SAS token.
func TestReconnectAfterBrokerDisconnect(t *testing.T) {
	h := newHarness(t, "", nil)
	id := edgeID + "/a"
	c := h.newClient(id)
	c.OnMethod("ping", func([]byte) (int, []byte) { return 200, []byte(`"pong"`) })
	h.connect(c)
	for round := range 3 {
		time.Sleep(1100 * time.Millisecond) // a new token has a new expiry second
		h.cut(c, id)
		// Methods work on the new connection: it subscribed again.
		eventually(t, fmt.Sprintf("the method to answer after reconnection %d", round+1), func() bool {
			r, err := h.b.InvokeMethod(h.ctx, id, "ping", nil, time.Second)
			return err == nil && r.Status == 200
		})
		check(t, c.SendEvent(timeout(t), client.Message{Body: []byte("after")}))
	}
	pw := h.auth.passwordsOf(id)
	seen := map[string]bool{}
	for _, p := range pw {
		seen[p] = true
	}
	if len(pw) < 4 || len(seen) != len(pw) {
		t.Errorf("%d connections presented %d distinct tokens", len(pw), len(seen))
	}
}

// A connection is renewed, with a new token, before its token expires.
func TestTokenRenewal(t *testing.T) {
	h := newHarness(t, "", nil)
	id := edgeID + "/a"
	c := h.newClient(id, client.WithTokenTTL(2*time.Second))
	h.connect(c)
	eventually(t, "a second connection with a new token", func() bool {
		pw := h.auth.passwordsOf(id)
		return len(pw) >= 2 && pw[0] != pw[1]
	})
	eventually(t, "the renewed connection", c.IsConnected)
	check(t, c.SendEvent(timeout(t), client.Message{Body: []byte("x")}))
}

// Refused credentials fail Connect at once instead of retrying.
func TestConnectRefused(t *testing.T) {
	h := newHarness(t, "", nil)
	for name, cs := range map[string]string{
		"wrong key":        strings.Replace(h.connString("dev1"), "SharedAccessKey=", "SharedAccessKey=AAAA", 1),
		"unknown identity": strings.Replace(h.connString(edgeID+"/a"), "ModuleId=a", "ModuleId=zz", 1),
	} {
		t.Run(name, func(t *testing.T) {
			c, err := client.FromConnectionString(cs, client.WithBroker("tcp://"+h.addr))
			check(t, err)
			defer c.Close()
			start := time.Now()
			err = c.Connect(timeout(t))
			if !errors.Is(err, client.ErrRefused) {
				t.Fatalf("Connect: %v, want ErrRefused", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("refusal took %v: retried", d)
			}
			if err := c.SendEvent(timeout(t), client.Message{}); !errors.Is(err, client.ErrNotConnected) {
				t.Errorf("SendEvent after a refused Connect: %v", err)
			}
		})
	}
	// A subscription the identity may not make (C2D is for devices) is a
	// refusal too.
	c := h.newClient(edgeID + "/a")
	c.OnC2D(func(client.Message) {})
	if err := c.Connect(timeout(t)); !errors.Is(err, client.ErrRefused) {
		t.Errorf("C2D handler on a module: %v", err)
	}
	// Nothing listening: retried until ctx ends.
	c2, err := client.FromConnectionString(h.connString("dev1"), client.WithBroker("tcp://"+deadAddr(t)), client.WithBackoff(time.Millisecond, 10*time.Millisecond))
	check(t, err)
	defer c2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := c2.Connect(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Connect with no broker: %v", err)
	}
}

// FromEnvironment: without the supervisor's variables, an error naming
// them; with them, a TLS connection to GatewayHostName trusting the edge
// CA from EdgeModuleCACertificateFile.
func TestFromEnvironment(t *testing.T) {
	t.Setenv(client.EnvConnectionString, "")
	_, err := client.FromEnvironment()
	if !errors.Is(err, client.ErrNoEnvironment) {
		t.Fatalf("no environment: %v", err)
	}
	for _, v := range []string{"IOTEDGE_DEVICEID", "IOTEDGE_MODULEID", "IOTEDGE_GATEWAYHOSTNAME", "IOTEDGE_IOTHUBHOSTNAME", "EdgeHubConnectionString", "EdgeModuleCACertificateFile"} {
		if !strings.Contains(err.Error(), v) {
			t.Errorf("error does not name %s: %v", v, err)
		}
	}

	caPEM, cert := edgeCA(t)
	h := newHarness(t, "", func(o *broker.Options) {
		o.TCP, o.TLS = "", "127.0.0.1:0"
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	check(t, os.WriteFile(caFile, caPEM, 0o600))
	cs := strings.Replace(h.connString(edgeID+"/a"), "GatewayHostName=edge.test", "GatewayHostName="+h.b.Addr("tls").String(), 1)
	t.Setenv(client.EnvConnectionString, cs)
	t.Setenv(client.EnvCACertificate, caFile)
	c, err := client.FromEnvironment()
	check(t, err)
	defer c.Close()
	if c.DeviceID() != edgeID || c.ModuleID() != "a" {
		t.Errorf("identity %s/%s", c.DeviceID(), c.ModuleID())
	}
	check(t, c.Connect(timeout(t)))
	check(t, c.SendOutput(timeout(t), "out", client.Message{Body: []byte("tls")}))

	// Without the CA the edge's certificate is not trusted: not a refusal,
	// so Connect retries until its context ends.
	t.Setenv(client.EnvCACertificate, "")
	c2, err := client.FromEnvironment(client.WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	check(t, err)
	defer c2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c2.Connect(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted edge certificate: %v", err)
	}
	// A CA file that is not PEM.
	check(t, os.WriteFile(caFile, []byte("nope"), 0o600))
	t.Setenv(client.EnvCACertificate, caFile)
	if _, err := client.FromEnvironment(); err == nil || !strings.Contains(err.Error(), client.EnvCACertificate) {
		t.Errorf("bad CA file: %v", err)
	}
	// A device's connection string is not a module's environment.
	t.Setenv(client.EnvCACertificate, "")
	t.Setenv(client.EnvConnectionString, h.connString("dev1"))
	if _, err := client.FromEnvironment(); err == nil || !strings.Contains(err.Error(), "ModuleId") {
		t.Errorf("device connection string: %v", err)
	}
}

// Operations wait for the connection (bounded by ctx) while it is down and
// proceed once it is back.
func TestOperationsWaitForConnection(t *testing.T) {
	h := newHarness(t, "", nil)
	id := edgeID + "/a"
	c := h.newClient(id)
	h.connect(c)
	h.auth.setRefused(id, true)
	h.b.Disconnect(id, "test")
	eventually(t, "the client to notice", func() bool { return !c.IsConnected() })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := c.SendEvent(ctx, client.Message{Body: []byte("x")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("SendEvent while disconnected: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- c.SendEvent(timeout(t), client.Message{Body: []byte("later"), MessageID: "later"}) }()
	time.Sleep(100 * time.Millisecond)
	h.auth.setRefused(id, false)
	check(t, recv(t, done))
	msgs, _ := h.queue("$upstream").Read(0, 10)
	if len(msgs) != 1 || msgs[0].ID != "later" {
		t.Errorf("upstream %v", msgs)
	}
}

// Close ends every goroutine the client started, even with a reconnection
// behind it and handlers registered, and operations after it fail.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	h := newHarness(t, "", nil)
	id := edgeID + "/a"
	base := goroutines()
	c := h.newClient(id)
	c.OnInput("in", func(client.Message) {})
	c.OnDesired(func(map[string]any, int64) {})
	c.OnMethod("m", func([]byte) (int, []byte) { return 200, nil })
	h.connect(c)
	h.cut(c, id)
	check(t, c.SendEvent(timeout(t), client.Message{Body: []byte("x")}))
	check(t, c.Close())
	check(t, c.Close()) // idempotent
	if err := c.SendEvent(timeout(t), client.Message{}); !errors.Is(err, client.ErrClosed) {
		t.Errorf("SendEvent after Close: %v", err)
	}
	if err := c.Connect(timeout(t)); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Connect after Close: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for goroutines() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before the client:\n%s", goroutines(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func goroutines() int { return runtime.NumGoroutine() }

// Close during a first Connect to nowhere ends it.
func TestCloseAbortsConnect(t *testing.T) {
	c, err := client.FromConnectionString("HostName=h;DeviceId=d;SharedAccessKey=AAAA", client.WithBroker("tcp://"+deadAddr(t)))
	check(t, err)
	done := make(chan error, 1)
	go func() { done <- c.Connect(context.Background()) }()
	time.Sleep(100 * time.Millisecond)
	check(t, c.Close())
	if err := recv(t, done); err == nil {
		t.Fatal("Connect succeeded")
	}
}

// Twin JSON numbers are float64 in the maps, versions int64.
func TestTwinJSONShape(t *testing.T) {
	h := newHarness(t, "", nil)
	id := edgeID + "/b"
	h.patchDesired(id, `{"a":{"b":[1,2]},"s":"x"}`)
	c := h.newClient(id)
	h.connect(c)
	tw, err := c.GetTwin(timeout(t))
	check(t, err)
	b, _ := json.Marshal(tw.Desired)
	if string(b) != `{"a":{"b":[1,2]},"s":"x"}` || tw.DesiredVersion < 1 {
		t.Errorf("desired %s version %d", b, tw.DesiredVersion)
	}
}
