package upstream

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/sync/hub"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// recorder stands in for the broker: it records what the link hands down.
type recorder struct {
	mu      sync.Mutex
	changes []twin.Change
	c2d     []queue.Message
	dropped []string
	purged  []string
}

func (r *recorder) TwinChanges(ch []twin.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, ch...)
}

func (r *recorder) Disconnect(id, _ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropped = append(r.dropped, id)
}

// PurgeQueues records the identities whose queues the link empties (c2d
// is what was handed down, not what waits: it stays).
func (r *recorder) PurgeQueues(_ context.Context, id string) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.purged = append(r.purged, id)
	return 0, nil
}

func (r *recorder) SendC2D(_ context.Context, device string, m queue.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	m.Source = device
	r.c2d = append(r.c2d, m)
	return nil
}

func (r *recorder) InvokeMethod(_ context.Context, target, name string, payload []byte, _ time.Duration) protocol.MethodResult {
	if target != "dev1" {
		return protocol.MethodResult{Status: 404, Error: target + " is not connected"}
	}
	return protocol.MethodResult{Status: 200, Payload: []byte(fmt.Sprintf(`{"method":%q,"got":%s}`, name, payload))}
}

type env struct {
	ctx     context.Context
	hub     *hub.Hub
	handler atomic.Value // the hub's handler (a handlerBox); a test may swap in another hub with serve
	cut     atomic.Bool  // the link is down: every request fails with 503
	srv     *httptest.Server
	db      *kv.DB
	queues  *queue.Store
	twins   *twin.Store
	ids     *identity.Cache
	rec     *recorder
	link    *Link
	edgeCS  sas.ConnString
}

func newEnv(t *testing.T) *env { return newEnvWith(t, nil) }

// newEnvWith runs before (if not nil) on the edge's stores before the link
// starts.
func newEnvWith(t *testing.T, before func(e *env)) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := &env{ctx: ctx, rec: &recorder{}}
	var err error
	e.hub, err = hub.Open(ctx, "", hub.Options{HostName: "hub.test", OwnerKey: []byte("owner-key"), InMemory: true, PullWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e.serve(e.hub.Handler())
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e.cut.Load() {
			http.Error(w, "link cut", http.StatusServiceUnavailable)
			return
		}
		e.handler.Load().(handlerBox).Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { e.srv.CloseClientConnections(); e.srv.Close(); _ = e.hub.Close() })
	gw, err := e.hub.PutDevice(ctx, identity.JSON{DeviceID: "gw1", Capabilities: &identity.Capabilities{IoTEdge: true}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.hub.PutDevice(ctx, identity.JSON{DeviceID: "dev1", ParentScopes: []string{gw.DeviceScope}}); err != nil {
		t.Fatal(err)
	}
	e.edgeCS = sas.ConnString{HostName: "hub.test", DeviceID: "gw1", SharedAccessKey: gw.Auth.PrimaryKey}
	if e.db, err = kv.Open("", kv.Options{InMemory: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.db.Close() })
	if e.queues, err = queue.Open(ctx, e.db, queue.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.queues.Close() })
	if e.twins, err = twin.Open(ctx, e.db, twin.Options{Role: twin.Edge, Name: "gw1"}); err != nil {
		t.Fatal(err)
	}
	if e.ids, err = identity.Open(ctx, e.db, identity.Options{}); err != nil {
		t.Fatal(err)
	}
	e.link, err = New(Options{URL: e.srv.URL, Edge: e.edgeCS, DB: e.db, Queues: e.queues, Twins: e.twins, Identities: e.ids,
		Target: e.rec, PullWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(e)
	}
	done := make(chan struct{})
	lctx, stop := context.WithCancel(ctx)
	go func() { defer close(done); _ = e.link.Run(lctx) }()
	t.Cleanup(func() { stop(); <-done })
	return e
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestLinkEndToEnd(t *testing.T) {
	e := newEnv(t)
	// Identities in the edge's scope arrive, and the twins with them.
	eventually(t, "identities", func() bool { _, ok, _ := e.ids.Get("dev1"); return ok })
	if _, ok, _ := e.ids.Get("gw1/$edgeHub"); !ok {
		t.Fatal("the edge's $edgeHub module identity did not arrive")
	}
	eventually(t, "twins", func() bool { _, err := e.twins.Get("dev1"); return err == nil })

	// Messages drain in order, exactly once.
	q, err := e.queues.Queue("$upstream/pdefault", queue.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	for i := 0; i < n; i += 100 {
		batch := make([]queue.Message, 100)
		for j := range batch {
			batch[j] = queue.Message{ID: fmt.Sprintf("m%d", i+j), Source: "devices/dev1", Body: []byte(fmt.Sprint(i + j))}
		}
		if _, err := q.Append(e.ctx, batch...); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the drain", func() bool { return q.Stats().Depth == 0 })
	evs := readEvents(t, e)
	if len(evs) != n {
		t.Fatalf("%d events at the hub, want %d", len(evs), n)
	}
	for i, ev := range evs {
		if ev.MessageID != fmt.Sprintf("m%d", i) || ev.DeviceID != "dev1" {
			t.Fatalf("event %d is %s from %s", i, ev.MessageID, ev.DeviceID)
		}
	}

	// Reported properties go up; desired come down as a change.
	session, _ := e.twins.BeginSession()
	if _, err := e.twins.PatchReported(e.ctx, "dev1", session, []byte(`{"temp":21}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "reported at the hub", func() bool {
		doc, err := e.hub.Twin("dev1")
		return err == nil && contains(doc, `"temp":21`)
	})
	if _, err := e.hub.UpdateTwin(e.ctx, "dev1", []byte(`{"properties":{"desired":{"interval":10}}}`), false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "desired at the edge", func() bool {
		v, err := e.twins.Get("dev1")
		return err == nil && fmt.Sprint(v.Desired["interval"]) == "10"
	})
	e.rec.mu.Lock()
	nch := len(e.rec.changes)
	e.rec.mu.Unlock()
	if nch == 0 {
		t.Error("no twin change handed to the broker")
	}

	// C2D reaches the edge once, even across pulls.
	if _, err := e.hub.SendC2D(e.ctx, "dev1", queue.Message{ID: "c1", Body: []byte("hi")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "c2d", func() bool { e.rec.mu.Lock(); defer e.rec.mu.Unlock(); return len(e.rec.c2d) == 1 })

	// Direct methods go through the edge; an unknown target is 404.
	st, payload, err := e.hub.InvokeMethod(e.ctx, "dev1", protocol.MethodRequest{MethodName: "reboot", Payload: []byte(`{"a":1}`), ResponseTimout: 5})
	if err != nil || st != 200 || !contains(payload, `"got":{"a":1}`) {
		t.Fatalf("method: %d %s %v", st, payload, err)
	}
	if _, err := e.hub.PutDevice(e.ctx, identity.JSON{DeviceID: "dev2", ParentScopes: []string{mustScope(t, e)}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.hub.InvokeMethod(e.ctx, "dev2", protocol.MethodRequest{MethodName: "x"}); err == nil {
		t.Fatal("method on a device not connected to the edge succeeded")
	}
	time.Sleep(50 * time.Millisecond)
	e.rec.mu.Lock()
	if len(e.rec.c2d) != 1 {
		t.Fatalf("c2d delivered %d times", len(e.rec.c2d))
	}
	if ttl := e.rec.c2d[0].TTL; ttl != protocol.C2DTTL {
		t.Errorf("c2d stored with TTL %v, want the hub's %v (never forever)", ttl, protocol.C2DTTL)
	}
	e.rec.mu.Unlock()

	// A device removed at the hub leaves the edge's cache and is disconnected.
	if err := e.hub.DeleteDevice(e.ctx, "dev1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "dev1 removed at the edge", func() bool { _, ok, _ := e.ids.Get("dev1"); return !ok })
	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	if !slices.Contains(e.rec.dropped, "dev1") {
		t.Fatalf("disconnected %v, want dev1", e.rec.dropped)
	}
}

func mustScope(t *testing.T, e *env) string {
	gw, err := e.hub.Identity("gw1")
	if err != nil {
		t.Fatal(err)
	}
	return gw.DeviceScope
}

func readEvents(t *testing.T, e *env) []hub.EventJSON {
	var out []hub.EventJSON
	from := uint64(1)
	for {
		evs, err := e.hub.Events(from, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return out
		}
		for _, ev := range evs {
			out = append(out, ev.JSON())
		}
		from = evs[len(evs)-1].Seq + 1
	}
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }

// A message on a higher-priority route overtakes a backlog on the default
// one (the live lane), and the backlog still drains in order.
func TestLiveLaneOvertakesBacklog(t *testing.T) {
	const backlog = 20_000
	e := newEnvWith(t, func(e *env) {
		q, err := e.queues.Queue("$upstream/pdefault", queue.QueueOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < backlog; i += 1000 {
			batch := make([]queue.Message, 1000)
			for j := range batch {
				batch[j] = queue.Message{ID: fmt.Sprintf("old%d", i+j), Source: "devices/dev1", Body: []byte("x")}
			}
			if _, err := q.Append(e.ctx, batch...); err != nil {
				t.Fatal(err)
			}
		}
		live, err := e.queues.Queue("$upstream/p0", queue.QueueOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := live.Append(e.ctx, queue.Message{ID: "live", Source: "devices/dev1", Body: []byte("now")}); err != nil {
			t.Fatal(err)
		}
	})
	eventually(t, "the drain", func() bool { return e.hub.LastSeq() >= backlog+1 })
	evs := readEvents(t, e)
	if evs[0].MessageID != "live" {
		t.Fatalf("the live message is event %s, not the first", evs[0].MessageID)
	}
	for i, ev := range evs[1:] {
		if ev.MessageID != fmt.Sprintf("old%d", i) {
			t.Fatalf("backlog event %d is %s", i, ev.MessageID)
		}
	}
}

// A hub whose store was replaced numbers its cloud-to-device messages from 1
// again: the edge must not take them for ones it already has.
func TestC2DAfterHubReplaced(t *testing.T) {
	e := newEnv(t)
	eventually(t, "identities", func() bool { _, ok, _ := e.ids.Get("dev1"); return ok })
	for i := range 3 {
		if _, err := e.hub.SendC2D(e.ctx, "dev1", queue.Message{ID: fmt.Sprintf("old%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "3 c2d", func() bool { e.rec.mu.Lock(); defer e.rec.mu.Unlock(); return len(e.rec.c2d) == 3 })

	// A new hub with the same registry (keys included), empty otherwise: a
	// hub made anew is a new twin replica incarnation.
	h2, err := hub.Open(e.ctx, "", hub.Options{HostName: "hub.test", OwnerKey: []byte("owner-key"), InMemory: true, PullWait: time.Second,
		Incarnation: "replaced"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h2.Close() })
	for _, id := range []string{"gw1", "dev1"} {
		old, _ := e.hub.Identity(id)
		j := old.ToJSON()
		if _, err := h2.PutDevice(e.ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	e.serve(h2.Handler())
	e.hub.Stop() // ends the pull held by the old hub
	if _, err := h2.SendC2D(e.ctx, "dev1", queue.Message{ID: "new0"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new hub's c2d", func() bool {
		e.rec.mu.Lock()
		defer e.rec.mu.Unlock()
		return len(e.rec.c2d) == 4 && e.rec.c2d[3].ID == "new0"
	})
}

// Another edge with this edge's instance id (a copy of its data directory on
// a machine with the same machine id) has already sent messages 1–5: the
// hub's cursor stands at 5. This edge still sends its own 1–5, the hub
// stores them, and the collision shows in the link's status.
func TestDrainDoesNotTrustTheCursor(t *testing.T) {
	e := newEnvWith(t, func(e *env) {
		clone := protocol.Messages{Instance: string(e.twins.Replica()), Queue: "$upstream/pdefault"}
		for s := uint64(1); s <= 5; s++ {
			clone.Msgs = append(clone.Msgs, protocol.Message{Seq: s, ID: fmt.Sprint(s), Source: "devices/dev1", Body: []byte(fmt.Sprint("clone-", s))})
		}
		if _, err := e.hub.Messages(e.ctx, "gw1", clone); err != nil {
			t.Fatal(err)
		}
	})
	q, err := e.queues.Queue("$upstream/pdefault", queue.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for s := 1; s <= 5; s++ {
		if _, err := q.Append(e.ctx, queue.Message{ID: fmt.Sprint(s), Source: "devices/dev1", Body: []byte(fmt.Sprint("own-", s))}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the drain", func() bool { return q.Stats().Depth == 0 })
	var bodies []string
	for _, ev := range readEvents(t, e) {
		bodies = append(bodies, string(ev.Body))
	}
	if len(bodies) != 10 || bodies[5] != "own-1" || bodies[9] != "own-5" {
		t.Fatalf("events at the hub %v, want the clone's 5 and this edge's 5", bodies)
	}
	if st := e.link.Status(); st.InstanceCollisions != 5 || st.Instance != string(e.twins.Replica()) {
		t.Fatalf("status %+v, want 5 instance collisions", st)
	}
}

// handlerBox gives every handler the env serves one type, as atomic.Value
// wants.
type handlerBox struct{ http.Handler }

// serve swaps in the handler the env's server answers with.
func (e *env) serve(h http.Handler) { e.handler.Store(handlerBox{h}) }
