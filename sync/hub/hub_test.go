package hub

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/sync/protocol"
)

var ownerKey = []byte("owner-key-for-tests")

type fixture struct {
	ctx context.Context
	h   *Hub
	srv *httptest.Server
	gw  identity.Identity
}

func newFixture(t *testing.T) *fixture {
	return newFixtureWith(t, Options{PullWait: 200 * time.Millisecond})
}

// newFixtureWith opens an in-memory hub with opts (host name and owner key
// filled in) behind a test server, with an edge gw1, its child dev1 and a
// device other outside its scope.
func newFixtureWith(t *testing.T, opts Options) *fixture {
	t.Helper()
	ctx := context.Background()
	opts.HostName, opts.OwnerKey, opts.InMemory = "hub.test", ownerKey, true
	h, err := Open(ctx, "", opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h.Handler())
	t.Cleanup(func() { h.Stop(); srv.Close(); _ = h.Close() })
	gw, err := h.PutDevice(ctx, identity.JSON{DeviceID: "gw1", Capabilities: &identity.Capabilities{IoTEdge: true}})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []identity.JSON{{DeviceID: "dev1", ParentScopes: []string{gw.DeviceScope}}, {DeviceID: "other"}} {
		if _, err := h.PutDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	return &fixture{ctx: ctx, h: h, srv: srv, gw: gw}
}

func (f *fixture) do(t *testing.T, method, path, auth string, body []byte, hdr map[string]string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, bytes.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

func ownerToken() string {
	return sas.NewToken("hub.test", ownerKey, "owner", time.Now().Add(time.Hour))
}

func (f *fixture) edgeToken() string {
	return sas.NewToken("hub.test/devices/gw1", f.gw.Auth.PrimaryKey, "", time.Now().Add(time.Hour))
}

func (f *fixture) frame(t *testing.T, path string, in, out any) (int, []byte) {
	t.Helper()
	return f.frameAs(t, "gw1", path, in, out)
}

func TestAuth(t *testing.T) {
	f := newFixture(t)
	for name, tok := range map[string]string{
		"none":         "",
		"garbage":      "Bearer x",
		"wrong key":    sas.NewToken("hub.test", []byte("nope"), "owner", time.Now().Add(time.Hour)),
		"expired":      sas.NewToken("hub.test", ownerKey, "owner", time.Now().Add(-time.Hour)),
		"device token": f.edgeToken(),
		"wrong host":   sas.NewToken("elsewhere", ownerKey, "owner", time.Now().Add(time.Hour)),
	} {
		code, body := f.do(t, "GET", "/devices", tok, nil, nil)
		if code != 401 || !strings.Contains(string(body), `"code":"Unauthorized"`) {
			t.Errorf("%s: %d %s, want 401 with a JSON error", name, code, body)
		}
	}
	// The owner's token does not open the link, and a leaf device's neither.
	code, _ := f.do(t, "POST", protocol.PathHello, ownerToken(), nil, nil)
	if code != 401 {
		t.Errorf("owner token on the link: %d, want 401", code)
	}
	dev, _ := f.h.Identity("dev1")
	code, _ = f.do(t, "POST", protocol.PathHello, sas.NewToken("hub.test/devices/dev1", dev.Auth.PrimaryKey, "", time.Now().Add(time.Hour)), nil, nil)
	if code != 403 {
		t.Errorf("leaf device token on the link: %d, want 403", code)
	}
	code, body := f.do(t, "GET", "/nothing/here", ownerToken(), nil, nil)
	if code != 404 || !strings.Contains(string(body), "NotFound") {
		t.Errorf("unknown path: %d %s", code, body)
	}
}

func TestRegistry(t *testing.T) {
	f := newFixture(t)
	code, body := f.do(t, "PUT", "/devices/leaf2", ownerToken(), []byte(`{"deviceId":"leaf2","parentScopes":["`+f.gw.DeviceScope+`"]}`), nil)
	if code != 200 {
		t.Fatalf("PUT device: %d %s", code, body)
	}
	var j identity.JSON
	_ = json.Unmarshal(body, &j)
	if j.Authentication == nil || len(j.Authentication.SymmetricKey.PrimaryKey) == 0 {
		t.Fatalf("no keys generated: %s", body)
	}
	for _, c := range []struct{ path, body, want string }{
		{"/devices/bad", `{"deviceId":"bad","parentScopes":["ms-azure-iot-edge://nobody-1"]}`, "not the deviceScope of an edge"},
		{"/devices/x", `{"deviceId":"y"}`, "differs"},
		{"/devices/x", `not json`, "want a device as JSON"},
		{"/devices/bad%20id", `{}`, "device id"},
	} {
		code, body := f.do(t, "PUT", c.path, ownerToken(), []byte(c.body), nil)
		if code != 400 || !strings.Contains(string(body), c.want) {
			t.Errorf("PUT %s %s: %d %s, want 400 with %q", c.path, c.body, code, body, c.want)
		}
	}
	// An edge gets its system modules; a deployment creates module identities.
	if _, err := f.h.Identity("gw1/$edgeHub"); err != nil {
		t.Fatal(err)
	}
	code, body = f.do(t, "POST", "/devices/gw1/applyConfigurationContent", ownerToken(),
		[]byte(`{"modulesContent":{"$edgeAgent":{"properties.desired":{"modules":{"filter":{"type":"process"}}}},"$edgeHub":{"properties.desired":{"routes":{"r":"FROM /messages/* INTO $upstream"}}}}}`), nil)
	if code != 200 {
		t.Fatalf("deploy: %d %s", code, body)
	}
	if _, err := f.h.Identity("gw1/filter"); err != nil {
		t.Fatalf("deployment did not create the module: %v", err)
	}
	doc, _ := f.h.Twin("gw1/$edgeHub")
	if !strings.Contains(string(doc), "FROM /messages/* INTO $upstream") {
		t.Fatalf("$edgeHub twin: %s", doc)
	}
	code, _ = f.do(t, "POST", "/devices/dev1/applyConfigurationContent", ownerToken(), []byte(`{"modulesContent":{}}`), nil)
	if code != 400 {
		t.Errorf("deploy to a leaf: %d, want 400", code)
	}
	// Twins: reported is the device's; bad patches are refused whole.
	for _, b := range []string{`{"properties":{"reported":{"x":1}}}`, `{"properties":{"desired":{"a b":1}}}`, `[1]`} {
		if code, body := f.do(t, "PATCH", "/twins/dev1", ownerToken(), []byte(b), nil); code != 400 {
			t.Errorf("PATCH %s: %d %s, want 400", b, code, body)
		}
	}
	code, body = f.do(t, "DELETE", "/devices/gw1", ownerToken(), nil, nil)
	if code != 204 {
		t.Fatalf("delete: %d %s", code, body)
	}
	if _, err := f.h.Identity("gw1/$edgeHub"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the modules of a deleted device stay: %v", err)
	}
}

func TestMessagesExactlyOnce(t *testing.T) {
	f := newFixture(t)
	inst := "edge:gw1.a1"
	batch := protocol.Messages{Instance: inst, Queue: "$upstream/pdefault", Msgs: []protocol.Message{
		{Seq: 1, ID: "m1", Source: "devices/dev1"},
		{Seq: 2, ID: "m2", Source: "devices/dev1"},
		{Seq: 3, ID: "m3", Source: "devices/other"}, // not a child of gw1
		{Seq: 4, ID: "m1", Source: "devices/dev1"},  // the device used m1 again: stored, ids are not unique
	}}
	var ack protocol.MessagesAck
	if code, body := f.frame(t, protocol.PathMessages, batch, &ack); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if ack.UpTo != 4 || ack.Appended != 3 || ack.Duplicates != 0 {
		t.Fatalf("ack %+v, want up to 4, 3 appended, no duplicate", ack)
	}
	// The same batch again (the ack was lost): nothing more is stored.
	ack = protocol.MessagesAck{}
	if code, _ := f.frame(t, protocol.PathMessages, batch, &ack); code != 200 || ack.UpTo != 4 || ack.Appended != 0 || ack.Duplicates != 3 {
		t.Fatalf("retransmission: %d %+v", code, ack)
	}
	var w protocol.Welcome
	f.frame(t, protocol.PathHello, protocol.Hello{Version: protocol.Version, Instance: inst}, &w)
	if w.Cursors["$upstream/pdefault"] != 4 {
		t.Fatalf("welcome cursors %v", w.Cursors)
	}
	evs, _ := f.h.Events(1, 100)
	if len(evs) != 3 || evs[0].MessageID != "m1" || evs[1].MessageID != "m2" || evs[2].MessageID != "m1" || evs[2].Seq != 3 {
		t.Fatalf("events %+v", evs)
	}
	if f.h.metrics.eventsRefused.Load() != 2 { // refused again when sent again
		t.Fatalf("refused %d, want 2", f.h.metrics.eventsRefused.Load())
	}
	// Hostile frames: another edge's incarnation, disorder, garbage.
	for name, c := range map[string]any{
		"foreign instance": protocol.Messages{Instance: "edge:gw2.x", Queue: "q", Msgs: []protocol.Message{{Seq: 1, Source: "devices/dev1"}}},
		"out of order":     protocol.Messages{Instance: inst, Queue: "q", Msgs: []protocol.Message{{Seq: 2, Source: "devices/dev1"}, {Seq: 1, Source: "devices/dev1"}}},
		"wrong version":    protocol.Hello{Version: 99, Instance: inst},
	} {
		path := protocol.PathMessages
		if _, ok := c.(protocol.Hello); ok {
			path = protocol.PathHello
		}
		if code, body := f.frame(t, path, c, nil); code != 400 {
			t.Errorf("%s: %d %s, want 400", name, code, body)
		}
	}
	code, _ := f.do(t, "POST", protocol.PathMessages, f.edgeToken(), []byte{0xff, 0x01}, nil)
	if code != 400 {
		t.Errorf("garbage frame: %d", code)
	}
	if evs, _ := f.h.Events(1, 100); len(evs) != 3 {
		t.Fatalf("refused frames changed the log: %d events", len(evs))
	}
}

func TestEventsLongPoll(t *testing.T) {
	f := newFixture(t)
	go func() {
		time.Sleep(100 * time.Millisecond)
		f.frame(t, protocol.PathMessages, protocol.Messages{Instance: "edge:gw1.a", Queue: "q",
			Msgs: []protocol.Message{{Seq: 1, ID: "x", Source: "devices/dev1", Body: []byte("hi")}}}, nil)
	}()
	code, body := f.do(t, "GET", "/messages/events?from=1&wait=5", ownerToken(), nil, nil)
	var evs []EventJSON
	if code != 200 || json.Unmarshal(body, &evs) != nil || len(evs) != 1 || string(evs[0].Body) != "hi" {
		t.Fatalf("%d %s", code, body)
	}
	code, body = f.do(t, "GET", "/messages/events?from=2&wait=0", ownerToken(), nil, nil)
	if code != 200 || strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("nothing new: %d %s", code, body)
	}
	if code, _ := f.do(t, "GET", "/messages/events?limit=0", ownerToken(), nil, nil); code != 400 {
		t.Fatalf("limit=0: %d", code)
	}
}

func TestMethodOffline(t *testing.T) {
	f := newFixture(t)
	code, body := f.do(t, "POST", "/twins/dev1/methods", ownerToken(), []byte(`{"methodName":"reboot","responseTimeoutInSeconds":5}`), nil)
	if code != 404 || !strings.Contains(string(body), "not connected") {
		t.Fatalf("%d %s", code, body)
	}
	code, _ = f.do(t, "POST", "/twins/dev1/methods", ownerToken(), []byte(`{}`), nil)
	if code != 400 {
		t.Fatalf("no method name: %d", code)
	}
}

func TestTwinsRefusesForeignWrites(t *testing.T) {
	f := newFixture(t)
	db, err := kv.Open("", kv.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, c := range []struct{ edgeName, twinID, want string }{
		{"gw2", "dev1", "an edge sends only its own writes"}, // another edge's writes
		{"gw1", "other", "not in the scope"},                 // a twin outside gw1's scope
	} {
		ts, err := twin.Open(f.ctx, db, twin.Options{Role: twin.Edge, Name: c.edgeName})
		if err != nil {
			t.Fatal(err)
		}
		s, _ := ts.BeginSession()
		if _, err := ts.PatchReported(f.ctx, c.twinID, s, []byte(`{"x":1}`)); err != nil {
			t.Fatal(err)
		}
		b, _, err := ts.Delta(crdt.VV{}, 100)
		if err != nil {
			t.Fatal(err)
		}
		code, body := f.frame(t, protocol.PathTwins, protocol.TwinsUp{Instance: "edge:gw1.x", Batch: b}, nil)
		if code != 400 || !strings.Contains(string(body), c.want) {
			t.Errorf("%s writing %s: %d %s, want 400 with %q", c.edgeName, c.twinID, code, body, c.want)
		}
	}
	doc, _ := f.h.Twin("dev1")
	if strings.Contains(string(doc), `"x":1`) {
		t.Fatalf("a refused delta reached the twin: %s", doc)
	}
}

func TestRetention(t *testing.T) {
	ctx := context.Background()
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	h, err := Open(ctx, "", Options{HostName: "hub.test", OwnerKey: ownerKey, InMemory: true, Retention: time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	gw, _ := h.PutDevice(ctx, identity.JSON{DeviceID: "gw1", Capabilities: &identity.Capabilities{IoTEdge: true}})
	if _, err := h.PutDevice(ctx, identity.JSON{DeviceID: "dev1", ParentScopes: []string{gw.DeviceScope}}); err != nil {
		t.Fatal(err)
	}
	send := func(seq uint64, body string) protocol.MessagesAck {
		t.Helper()
		ack, err := h.Messages(ctx, "gw1", protocol.Messages{Instance: "edge:gw1.a", Queue: "q", Msgs: []protocol.Message{{Seq: seq, Source: "devices/dev1", Body: []byte(body)}}})
		if err != nil {
			t.Fatal(err)
		}
		return ack
	}
	send(1, "old")
	send(2, "old, from a clone") // a collision: two digests under seq 2 …
	send(2, "old, from the original")
	mu.Lock()
	clock = clock.Add(2 * time.Hour)
	mu.Unlock()
	send(3, "new")
	send(2, "new, from a third clone") // … and a third, within the retention
	n, err := h.applyResult(ctx, expireEvents{Before: now().Add(-time.Hour).UnixMilli(), Max: 1000})
	if err != nil || n.(int) != 3 {
		t.Fatalf("expired %v, %v; want 3", n, err)
	}
	evs, _ := h.Events(1, 10)
	if len(evs) != 2 || string(evs[0].Body) != "new" || evs[0].Seq != 4 || evs[1].Seq != 5 {
		t.Fatalf("events after the retention: %+v", evs)
	}
	// Past the retention the digests are gone from the store; within it, not.
	if got := digestKeys(t, h); !reflect.DeepEqual(got, map[uint64]int{2: 1, 3: 1}) {
		t.Fatalf("digests per edge seq after the sweep: %v, want {2:1 3:1}", got)
	}
	if ack := send(3, "new"); ack.Appended != 0 || ack.Duplicates != 1 {
		t.Fatalf("a retransmission within the retention was stored: %+v", ack)
	}
	if ack := send(2, "new, from a third clone"); ack.Appended != 0 {
		t.Fatalf("a retransmission within the retention was stored: %+v", ack)
	}
	if ack := send(1, "old"); ack.Appended != 1 || ack.Collisions != 0 {
		t.Fatalf("a message whose digest was swept: %+v, want stored again (at least once)", ack)
	}
}

// digestKeys counts the digests stored per edge seq of edge:gw1.a's queue q.
func digestKeys(t *testing.T, h *Hub) map[uint64]int {
	t.Helper()
	out := map[uint64]int{}
	prefix := kv.AppendString(kv.AppendString([]byte{kv.PrefixLink, 's'}, "edge:gw1.a"), "q")
	err := h.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out[binary.BigEndian.Uint64(it.Item().Key()[len(prefix):])] = len(v) / digestSize
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// inScope (lookups, on the link's hot path) agrees with scope (the scan
// that pulls send) for every registered identity.
func TestInScopeMatchesScope(t *testing.T) {
	f := newFixture(t)
	if _, err := f.h.PutModule(f.ctx, identity.JSON{DeviceID: "dev1", ModuleID: "m"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.h.PutModule(f.ctx, identity.JSON{DeviceID: "other", ModuleID: "m"}); err != nil {
		t.Fatal(err)
	}
	ids, _, err := f.h.scope("gw1")
	if err != nil {
		t.Fatal(err)
	}
	want := idSet(ids)
	in, err := f.h.inScope("gw1")
	if err != nil {
		t.Fatal(err)
	}
	all, _ := f.h.ids().List()
	for _, id := range all {
		if _, ok := want[id.ID()]; in(id.ID()) != ok {
			t.Errorf("%s: inScope %v, scope %v", id.ID(), in(id.ID()), ok)
		}
	}
	if in("ghost") || len(want) != 5 { // gw1, its two system modules, dev1, dev1/m
		t.Errorf("scope %v", want)
	}
}

// An edge id may contain '.'; the edge "gw" may not use the incarnations of
// the edge "gw.1" (nor write twins under them).
func TestEdgeIDWithDot(t *testing.T) {
	f := newFixture(t)
	for _, id := range []string{"gw", "gw.1"} {
		gw, err := f.h.PutDevice(f.ctx, identity.JSON{DeviceID: id, Capabilities: &identity.Capabilities{IoTEdge: true}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.h.PutDevice(f.ctx, identity.JSON{DeviceID: "child-of-" + id, ParentScopes: []string{gw.DeviceScope}}); err != nil {
			t.Fatal(err)
		}
	}
	msgs := func(inst, src string) protocol.Messages {
		return protocol.Messages{Instance: inst, Queue: "q", Msgs: []protocol.Message{{Seq: 1, Source: src, Body: []byte("x")}}}
	}
	if _, err := f.h.Hello("gw.1", protocol.Hello{Version: protocol.Version, Instance: "edge:gw.1.a1b2"}); err != nil {
		t.Fatalf("hello of gw.1: %v", err)
	}
	if ack, err := f.h.Messages(f.ctx, "gw.1", msgs("edge:gw.1.a1b2", "devices/child-of-gw.1")); err != nil || ack.Appended != 1 {
		t.Fatalf("messages of gw.1: %+v %v", ack, err)
	}
	for _, inst := range []string{"edge:gw.1.a1b2", "edge:gw.", "edge:gw.a-b"} {
		if _, err := f.h.Messages(f.ctx, "gw", msgs(inst, "devices/child-of-gw")); !errors.Is(err, ErrInvalid) {
			t.Errorf("gw sending as %q: %v, want ErrInvalid", inst, err)
		}
	}
}

// Two instances of one edge (a data directory copied to another machine)
// each keep their pull; a newer pull of the same instance ends the older.
func TestPullsPerInstance(t *testing.T) {
	f := newFixture(t)
	closed := func(c <-chan struct{}) bool {
		select {
		case <-c:
			return true
		default:
			return false
		}
	}
	a := f.h.edges.begin("gw1", "edge:gw1.a1")
	b := f.h.edges.begin("gw1", "edge:gw1.b2")
	if closed(a) || closed(b) {
		t.Fatal("a pull of another instance ended one")
	}
	a2 := f.h.edges.begin("gw1", "edge:gw1.a1")
	if !closed(a) || closed(b) || closed(a2) {
		t.Fatal("a newer pull of the same instance did not end the older (alone)")
	}
	f.h.edges.end("gw1", "edge:gw1.a1", a)
	if a3 := f.h.edges.begin("gw1", "edge:gw1.a1"); !closed(a2) || closed(a3) {
		t.Fatal("the end of a replaced pull unregistered its successor")
	}
}

// TestRegistryRefusesWildcardIDs: '+' and '#' are MQTT wildcards; an id
// holding one would widen grants written for it, so the hub refuses it
// (a deviation from IoT Hub), with the reason and the allowed set.
func TestRegistryRefusesWildcardIDs(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct{ path, body string }{
		{"/devices/a%2Bb", `{"deviceId":"a+b"}`},
		{"/devices/%23", `{"deviceId":"#"}`},
		{"/devices/+", `{}`},
		{"/devices/gw1/modules/m%23", `{"moduleId":"m#"}`},
		{"/devices/gw1/modules/%2B", `{}`},
	} {
		code, body := f.do(t, "PUT", c.path, ownerToken(), []byte(c.body), nil)
		if code != 400 || !strings.Contains(string(body), "MQTT wildcards") || !strings.Contains(string(body), "ASCII letters") {
			t.Errorf("PUT %s %s: %d %s, want 400 naming the wildcard and the allowed set", c.path, c.body, code, body)
		}
	}
	code, body := f.do(t, "POST", "/devices/gw1/applyConfigurationContent", ownerToken(),
		[]byte(`{"modulesContent":{"$edgeAgent":{"properties.desired":{"modules":{"a+b":{"type":"process"}}}}}}`), nil)
	if code != 400 {
		t.Errorf("deployment with module a+b: %d %s, want 400", code, body)
	}
	ids, _ := f.h.ids().List()
	for _, i := range ids {
		if strings.ContainsAny(i.ID(), "+#") {
			t.Errorf("wildcard id %q was registered", i.ID())
		}
	}
}

// A pull acknowledges cloud-to-device messages only of devices in its
// edge's scope, counted in this hub's numbers: never the edge's own queue,
// a module, a device outside its scope or one that does not exist.
func TestC2DCursorsInScopeOnly(t *testing.T) {
	f := newFixture(t)
	hub := string(f.h.twins().Replica())
	cur := map[string]uint64{"dev1": 3, "gw1": 4, "dev1/m": 5, "other": 6, "ghost": 7, "bad id!": 8}
	got := f.h.c2dCursors("gw1", protocol.Pull{Instance: "edge:gw1.a", Hub: hub, C2D: cur})
	if want := map[string]uint64{"dev1": 3}; !reflect.DeepEqual(got, want) {
		t.Errorf("cursors acknowledged: %v, want %v", got, want)
	}
	if got := f.h.c2dCursors("gw1", protocol.Pull{Instance: "edge:gw1.a", Hub: "another hub", C2D: cur}); got != nil {
		t.Errorf("cursors of another hub's numbers acknowledged: %v", got)
	}
}
