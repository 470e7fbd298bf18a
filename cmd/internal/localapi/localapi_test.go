package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/supervisor"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// fixture is a local API over a real Badger store: queues, twins and an
// identity cache that knows the leaf device sensor1.
type fixture struct {
	t       *testing.T
	srv     *Server
	dir     string
	token   string
	queues  *queue.Store
	invoked atomic.Int64
	// restarted counts module restarts asked for (Options.Restart).
	restarted atomic.Int64
	now       atomic.Pointer[time.Time]
}

func newFixture(t *testing.T, mod func(*Options)) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{t: t, dir: t.TempDir()}
	start := time.Now()
	f.now.Store(&start)
	db, err := kv.Open(filepath.Join(f.dir, "store"), kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if f.queues, err = queue.Open(ctx, db, queue.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.queues.Close() })
	twins, err := twin.Open(ctx, db, twin.Options{Role: twin.Edge, Name: "gw1"})
	if err != nil {
		t.Fatal(err)
	}
	session, err := twins.BeginSession()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := twins.PatchReported(ctx, "sensor1", session, []byte(`{"secret":"s3cr3t"}`)); err != nil {
		t.Fatal(err)
	}
	ids, err := identity.Open(ctx, db, identity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ids.Put(ctx, identity.Identity{DeviceID: "sensor1", Status: identity.Enabled,
		Auth: identity.Auth{Type: identity.AuthSAS, PrimaryKey: []byte("0123456789abcdef0123456789abcdef")}}); err != nil {
		t.Fatal(err)
	}
	opts := f.options(twins, ids)
	if mod != nil {
		mod(&opts)
	}
	if f.srv, err = Open(opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.srv.Close() })
	tok, err := ReadToken(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	f.token = tok
	return f
}

func (f *fixture) options(twins *twin.Store, ids *identity.Cache) Options {
	return Options{
		Addr: "127.0.0.1:0", DataDir: f.dir, Hostname: "gw1.example",
		Status: func() Status { return Status{DeviceID: "gw1", Link: "standalone"} },
		Twin: func(id string) ([]byte, error) {
			v, err := twins.Get(id)
			if err != nil {
				return nil, err
			}
			return v.ServiceJSON(), nil
		},
		ReadQueue: func(name string, after uint64, n int) ([]queue.Message, bool, error) {
			q, ok := f.queues.Lookup(name)
			if !ok {
				return nil, false, nil
			}
			msgs, err := q.Read(after, n)
			return msgs, true, err
		},
		KnownDevice: func(id string) bool {
			i, ok, err := ids.Get(id)
			return err == nil && ok && !i.Edge
		},
		SendC2D: func(ctx context.Context, d string, m queue.Message) error {
			q, err := f.queues.Queue("c2d/"+d+"/p0", queue.QueueOptions{})
			if err != nil {
				return err
			}
			_, err = q.Append(ctx, m)
			return err
		},
		Invoke: func(context.Context, string, string, []byte, time.Duration) protocol.MethodResult {
			f.invoked.Add(1)
			return protocol.MethodResult{Status: 200, Payload: []byte(`{"ok":true}`)}
		},
		Logs: func(_ context.Context, _ string, _ int, _ bool, w io.Writer) error {
			_, err := io.WriteString(w, "secret log line\n")
			return err
		},
		Restart: func(_ context.Context, m string) error {
			if m != "m" {
				return fmt.Errorf("%w %q", supervisor.ErrNoModule, m)
			}
			f.restarted.Add(1)
			return nil
		},
		TwinFields: func(max int) ([]TwinFields, error) {
			fs, err := twins.Fields("sensor1", "hub")
			return []TwinFields{{ID: "sensor1", Fields: fs}}, err
		},
		Clients: func() []MQTTClient {
			return []MQTTClient{{ClientID: "gw1/m", DeviceID: "gw1", ModuleID: "m", Listener: "mqtts", RemoteAddr: "10.9.8.7:5555",
				Protocol: "5", ConnectedSince: time.Unix(1700000000, 0).UTC(), Subscriptions: 2, Inflight: 1, Received: 3, Delivered: 4}}
		},
		LiveInterval: 20 * time.Millisecond,
		Now:          func() time.Time { return *f.now.Load() },
	}
}

// req describes one request; the zero value is an anonymous GET.
type req struct {
	method, path, body, ctype string
	token                     string
	header                    map[string]string
	host                      string
}

func (f *fixture) do(r req) (*http.Response, []byte) {
	f.t.Helper()
	if r.method == "" {
		r.method = http.MethodGet
	}
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr, err := http.NewRequest(r.method, "http://"+f.srv.Addr()+r.path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	if r.ctype != "" {
		hr.Header.Set("Content-Type", r.ctype)
	}
	if r.token != "" {
		hr.Header.Set("Authorization", "Bearer "+r.token)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	if r.host != "" {
		hr.Host = r.host
	}
	resp, err := noRedirect.Do(hr)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, data
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// The requests that act or reveal: each needs the operator token.
var guarded = []req{
	{method: "POST", path: "/devices/sensor1/messages/deviceBound", body: "reboot", ctype: "application/octet-stream"},
	{method: "POST", path: "/twins/sensor1/methods", body: `{"methodName":"reboot"}`, ctype: "application/json"},
	{method: "POST", path: "/twins/gw1/modules/m/methods", body: `{"methodName":"reboot"}`, ctype: "application/json"},
	{method: "POST", path: "/login-codes", body: `{}`, ctype: "application/json"},
	{path: "/queues/c2d/sensor1/p0"},
	{path: "/twins/sensor1"},
	{path: "/twins/gw1/modules/m"},
	{path: "/modules/m/logs"},
	{method: "POST", path: "/modules/m/restart", body: `{}`, ctype: "application/json"},
	{path: "/dashboard/twins"},
	{path: "/clients"},
}

func TestUnauthenticatedRefused(t *testing.T) {
	f := newFixture(t, nil)
	f.sendC2D(f.token, "queued-payload") // something to reveal
	for _, r := range guarded {
		for _, tok := range []string{"", strings.Repeat("x", len(f.token)), f.token[:len(f.token)-1] + "!"} {
			r.token = tok
			resp, data := f.do(r)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: %d %s, want 401", r.method, r.path, tok, resp.StatusCode, data)
				continue
			}
			var e struct{ Code, Message string }
			if err := json.Unmarshal(data, &e); err != nil || e.Code == "" || !strings.Contains(e.Message, TokenPath(f.dir)) ||
				!strings.Contains(e.Message, "Authorization: Bearer") {
				t.Errorf("%s %s: error %s does not say where the token is and how to send it", r.method, r.path, data)
			}
			for _, secret := range []string{"s3cr3t", "queued-payload", "secret log line", "cXVldWVk", "10.9.8.7"} {
				if bytes.Contains(data, []byte(secret)) {
					t.Errorf("%s %s unauthenticated revealed %q", r.method, r.path, secret)
				}
			}
		}
	}
	if n := f.invoked.Load(); n != 0 {
		t.Errorf("%d direct methods invoked without the token", n)
	}
	if d := f.depth("c2d/sensor1/p0"); d != 1 {
		t.Errorf("C2D queue holds %d messages, want the 1 sent with the token", d)
	}
}

func (f *fixture) sendC2D(token, payload string) {
	f.t.Helper()
	resp, data := f.do(req{method: "POST", path: "/devices/sensor1/messages/deviceBound", body: payload,
		ctype: "application/octet-stream", token: token})
	if resp.StatusCode != http.StatusNoContent {
		f.t.Fatalf("C2D with the token: %d %s", resp.StatusCode, data)
	}
}

func (f *fixture) depth(name string) int64 {
	return f.queues.Stats()[name].Depth
}

func TestTokenAccepted(t *testing.T) {
	f := newFixture(t, nil)
	f.sendC2D(f.token, "hello")
	q, ok := f.queues.Lookup("c2d/sensor1/p0")
	if !ok {
		t.Fatal("no C2D queue")
	}
	msgs, err := q.Read(0, 10)
	if err != nil || len(msgs) != 1 || string(msgs[0].Body) != "hello" {
		t.Fatalf("C2D queue: %v %v", msgs, err)
	}
	if msgs[0].TTL != protocol.C2DTTL {
		t.Errorf("C2D TTL %v, want the hub's %v (no message waits forever)", msgs[0].TTL, protocol.C2DTTL)
	}
	for _, r := range guarded {
		r.token = f.token
		if resp, data := f.do(r); resp.StatusCode == http.StatusUnauthorized || resp.StatusCode >= 500 {
			t.Errorf("%s %s with the token: %d %s", r.method, r.path, resp.StatusCode, data)
		}
	}
	if _, data := f.do(req{path: "/twins/sensor1", token: f.token}); !bytes.Contains(data, []byte("s3cr3t")) {
		t.Errorf("twin with the token: %s", data)
	}
	if f.invoked.Load() != 2 {
		t.Errorf("%d methods invoked with the token, want 2", f.invoked.Load())
	}
}

func TestOpenOnLoopback(t *testing.T) {
	f := newFixture(t, nil)
	for _, p := range []string{"/healthz", "/status", "/metrics", "/"} {
		if resp, data := f.do(req{path: p}); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s without a credential on loopback: %d %s", p, resp.StatusCode, data)
		}
	}
}

func TestNonLoopbackNeedsToken(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Addr = "0.0.0.0:0" })
	// The test reaches 0.0.0.0 through the loopback interface: what counts
	// is the address the API listens on.
	for _, p := range []string{"/status", "/metrics", "/"} {
		if resp, data := f.do(req{path: p}); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without a credential on a non-loopback address: %d %s", p, resp.StatusCode, data)
		}
		if resp, data := f.do(req{path: p, token: f.token}); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s with the token on a non-loopback address: %d %s", p, resp.StatusCode, data)
		}
	}
	if resp, _ := f.do(req{path: "/healthz"}); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz: %d", resp.StatusCode)
	}
}

// GET /clients with the token lists the broker's clients as the edge
// gives them, in camelCase.
func TestClientsListed(t *testing.T) {
	f := newFixture(t, nil)
	resp, data := f.do(req{path: "/clients", token: f.token})
	want := `{"clients":[{"clientId":"gw1/m","deviceId":"gw1","moduleId":"m","listener":"mqtts","remoteAddr":"10.9.8.7:5555",` +
		`"protocol":"5","connectedSince":"2023-11-14T22:13:20Z","subscriptions":2,"inflight":1,"received":3,"delivered":4}]}`
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(data)) != want {
		t.Fatalf("GET /clients: %d %s\nwant %s", resp.StatusCode, data, want)
	}
	cs, err := Client{Addr: f.srv.Addr(), Token: f.token}.Clients(context.Background())
	if err != nil || len(cs.Clients) != 1 || cs.Clients[0].RemoteAddr != "10.9.8.7:5555" {
		t.Fatalf("Client.Clients: %+v %v", cs, err)
	}
	f = newFixture(t, func(o *Options) { o.Clients = func() []MQTTClient { return nil } })
	if _, data := f.do(req{path: "/clients", token: f.token}); strings.TrimSpace(string(data)) != `{"clients":[]}` {
		t.Errorf("no clients: %s, want an empty list", data)
	}
}
