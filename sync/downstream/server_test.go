package downstream

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/sync/protocol"
	"github.com/outpost-edge/outpost/sync/upstream"
)

const hostName = "hub.example"

var (
	keyL3    = []byte("l3-primary-key-32-bytes-long----")
	keyL2    = []byte("l2-primary-key-32-bytes-long----")
	keyOther = []byte("ox-primary-key-32-bytes-long----")
)

// tree: l4 (this parent) ← l3 (child edge) ← l2 (grandchild edge) ← dev2;
// l3 ← dev1 and module l3/m; l4 ← other (a leaf of the parent itself) and
// ox (an edge under l4 that is not l3).
func tree() []identity.Identity {
	sasAuth := func(k []byte) identity.Auth {
		return identity.Auth{Type: identity.AuthSAS, PrimaryKey: k, SecondaryKey: k}
	}
	return []identity.Identity{
		{DeviceID: "l4", Status: identity.Enabled, Edge: true, DeviceScope: "s-l4", Auth: sasAuth([]byte("l4-key"))},
		{DeviceID: "l3", Status: identity.Enabled, Edge: true, DeviceScope: "s-l3", ParentScopes: []string{"s-l4"}, Auth: sasAuth(keyL3)},
		{DeviceID: "l3", ModuleID: "m", Status: identity.Enabled, Auth: sasAuth([]byte("m-key"))},
		{DeviceID: "l2", Status: identity.Enabled, Edge: true, DeviceScope: "s-l2", ParentScopes: []string{"s-l3"}, Auth: sasAuth(keyL2)},
		{DeviceID: "dev1", Status: identity.Enabled, ParentScopes: []string{"s-l3"}, Auth: sasAuth([]byte("d1"))},
		{DeviceID: "dev2", Status: identity.Enabled, ParentScopes: []string{"s-l2"}, Auth: sasAuth([]byte("d2"))},
		{DeviceID: "other", Status: identity.Enabled, ParentScopes: []string{"s-l4"}, Auth: sasAuth([]byte("o"))},
		{DeviceID: "ox", Status: identity.Enabled, Edge: true, DeviceScope: "s-ox", ParentScopes: []string{"s-l4"}, Auth: sasAuth(keyOther)},
	}
}

type parent struct {
	dir    string
	db     *kv.DB
	queues *queue.Store
	ids    *identity.Cache
	srv    *Server
	http   *httptest.Server
}

func openParent(t *testing.T, dir string) *parent {
	t.Helper()
	ctx := context.Background()
	p := &parent{dir: dir}
	var err error
	if p.db, err = kv.Open(dir, kv.Options{}); err != nil {
		t.Fatal(err)
	}
	if p.queues, err = queue.Open(ctx, p.db, queue.Options{}); err != nil {
		t.Fatal(err)
	}
	if p.ids, err = identity.Open(ctx, p.db, identity.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := p.ids.Put(ctx, tree()...); err != nil {
		t.Fatal(err)
	}
	if p.srv, err = New(Options{Edge: "l4", HostName: hostName, DB: p.db, Queues: p.queues, Identities: p.ids, Replica: "edge:l4.x",
		PullWait: 500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	p.http = httptest.NewServer(p.srv.Handler())
	return p
}

func (p *parent) close() {
	p.http.Close()
	_ = p.queues.Close()
	_ = p.db.Close()
}

func (p *parent) upstream(t *testing.T) []queue.Message {
	t.Helper()
	q, ok := p.queues.Lookup("$upstream/pdefault")
	if !ok {
		return nil
	}
	msgs, err := q.Read(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

type child struct {
	rec    *recorder
	db     *kv.DB
	queues *queue.Store
	twins  *twin.Store
	ids    *identity.Cache
	link   *upstream.Link
	stop   func()
}

type nopTarget struct{ rec *recorder }

// recorder keeps what a child's link handed its edge.
type recorder struct {
	mu  sync.Mutex
	c2d []string // device:body
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.c2d)
}

func (nopTarget) TwinChanges([]twin.Change) {}
func (t nopTarget) SendC2D(_ context.Context, dev string, m queue.Message) error {
	if t.rec != nil {
		t.rec.mu.Lock()
		t.rec.c2d = append(t.rec.c2d, dev+":"+string(m.Body))
		t.rec.mu.Unlock()
	}
	return nil
}
func (nopTarget) Disconnect(string, string)                        {}
func (nopTarget) PurgeQueues(context.Context, string) (int, error) { return 0, nil }
func (nopTarget) InvokeMethod(_ context.Context, target, name string, payload []byte, _ time.Duration) protocol.MethodResult {
	if target == "dev1" {
		return protocol.MethodResult{Status: 200, Payload: []byte(fmt.Sprintf(`{"answer":%q,"from":%q,"got":%s}`, name, target, payload))}
	}
	return protocol.MethodResult{Status: 404, Error: target + " is not connected"}
}

// startChild runs edge l3's unmodified upstream link against url.
func startChild(t *testing.T, url string) *child {
	t.Helper()
	ctx := context.Background()
	c := &child{rec: &recorder{}}
	var err error
	if c.db, err = kv.Open(t.TempDir(), kv.Options{}); err != nil {
		t.Fatal(err)
	}
	if c.queues, err = queue.Open(ctx, c.db, queue.Options{}); err != nil {
		t.Fatal(err)
	}
	if c.twins, err = twin.Open(ctx, c.db, twin.Options{Role: twin.Edge, Name: "l3"}); err != nil {
		t.Fatal(err)
	}
	if c.ids, err = identity.Open(ctx, c.db, identity.Options{}); err != nil {
		t.Fatal(err)
	}
	cs := sas.ConnString{HostName: hostName, DeviceID: "l3", SharedAccessKey: keyL3}
	if c.link, err = upstream.New(upstream.Options{URL: url, Edge: cs, DB: c.db, Queues: c.queues, Twins: c.twins,
		Identities: c.ids, Target: nopTarget{c.rec}, PullWait: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = c.link.Run(lctx) }()
	c.stop = func() {
		cancel()
		<-done
		_ = c.queues.Close()
		_ = c.db.Close()
	}
	t.Cleanup(c.stop)
	return c
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A child edge's link, unmodified, drains into its parent: every message
// once, in order, with the child in its edge path; a message whose source
// is outside the child's subtree is acknowledged and refused; the child
// gets its subtree's identities; twins are reported as not served, and the
// link stays online.
func TestChildDrainsIntoParent(t *testing.T) {
	p := openParent(t, t.TempDir())
	defer p.close()
	c := startChild(t, p.http.URL)
	q, err := c.queues.Queue("$upstream/pdefault", queue.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var in []queue.Message
	for i := range 5 {
		in = append(in, queue.Message{ID: fmt.Sprint("m", i), Source: "devices/dev1", Body: []byte(fmt.Sprint(i))})
	}
	in = append(in, queue.Message{ID: "mod", Source: "devices/l3/modules/m", Body: []byte("from a module")},
		queue.Message{ID: "deep", Source: "devices/dev2", Body: []byte("from under l2"), EdgePath: []string{"l2"}},
		queue.Message{ID: "stray", Source: "devices/other", Body: []byte("not l3's")},
		queue.Message{ID: "forged", Source: "devices/dev1", Body: []byte("bad path"), EdgePath: []string{"ox"}})
	if _, err := q.Append(context.Background(), in...); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the child's queue drained", func() bool { return q.Stats().Depth == 0 })
	got := p.upstream(t)
	if len(got) != 7 {
		t.Fatalf("parent queued %d messages, want 7: %+v", len(got), got)
	}
	for i, m := range got[:5] {
		if m.ID != fmt.Sprint("m", i) || m.Source != "devices/dev1" || len(m.EdgePath) != 1 || m.EdgePath[0] != "l3" {
			t.Errorf("message %d: %+v", i, m)
		}
	}
	if m := got[6]; m.ID != "deep" || fmt.Sprint(m.EdgePath) != "[l2 l3]" {
		t.Errorf("grandchild's message: %+v", m)
	}
	if st := p.srv.Stats(); st.Messages != 7 || st.Refused != 2 {
		t.Errorf("stats %+v, want 7 queued and 2 refused", st)
	}
	eventually(t, "the subtree's identities at the child", func() bool {
		ids, _ := c.ids.List()
		return len(ids) == 5 // l3, l3/m, l2, dev1, dev2
	})
	for _, id := range []string{"other", "ox", "l4"} {
		if _, ok, _ := c.ids.Get(id); ok {
			t.Errorf("the child got %s, outside its subtree", id)
		}
	}
	hlc, err := c.twins.BeginSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.twins.Ensure(context.Background(), "l3/m"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.twins.PatchReported(context.Background(), "l3/m", hlc, []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "twins reported as not served", func() bool { return c.link.Status().TwinsNotServed != "" })
	if st := c.link.Status(); st.State != "online" {
		t.Errorf("link state %q with twins not served, want online", st.State)
	}
}

// post sends one frame as edge dev (key) and returns the status and answer.
func post(t *testing.T, url, path, dev string, key []byte, in, out any) int {
	t.Helper()
	body, enc, err := protocol.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, url+path, bytes.NewReader(body))
	req.Header.Set("Authorization", sas.NewToken(sas.ResourceURI(hostName, dev, ""), key, "", time.Now().Add(time.Hour)))
	if enc != "" {
		req.Header.Set("Content-Encoding", enc)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := protocol.Decode(resp.Body, resp.Header.Get("Content-Encoding"), out); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

// A batch sent again (the child did not get the ack, or restarted) is
// recognised by the child's cursor and the digests of its latest messages,
// committed with them: counted as duplicates and not queued again, also
// after the parent restarts; another message under a used number (a copy of
// the child's data directory) is queued and counted as a collision.
func TestRetransmissionQueuedOnce(t *testing.T) {
	dir := t.TempDir()
	p := openParent(t, dir)
	frame := protocol.Messages{Instance: "edge:l3.a1", Queue: "$upstream/pdefault"}
	for s := uint64(1); s <= 4; s++ {
		frame.Msgs = append(frame.Msgs, protocol.Message{Seq: s, ID: fmt.Sprint(s), Source: "devices/dev1", Body: []byte("x")})
	}
	var ack protocol.MessagesAck
	if st := post(t, p.http.URL, protocol.PathMessages, "l3", keyL3, frame, &ack); st != 200 || ack.Appended != 4 || ack.UpTo != 4 {
		t.Fatalf("first send: %d %+v", st, ack)
	}
	p.close()
	p = openParent(t, dir)
	defer p.close()
	frame.Msgs = append(frame.Msgs, protocol.Message{Seq: 5, ID: "5", Source: "devices/dev1", Body: []byte("x")})
	ack = protocol.MessagesAck{}
	if st := post(t, p.http.URL, protocol.PathMessages, "l3", keyL3, frame, &ack); st != 200 || ack.Appended != 1 || ack.Duplicates != 4 || ack.UpTo != 5 {
		t.Fatalf("resend after a restart: %d %+v", st, ack)
	}
	if n := len(p.upstream(t)); n != 5 {
		t.Fatalf("parent queued %d, want 5", n)
	}
	var w protocol.Welcome
	if st := post(t, p.http.URL, protocol.PathHello, "l3", keyL3, protocol.Hello{Version: protocol.Version, Instance: "edge:l3.a1"}, &w); st != 200 || w.Cursors["$upstream/pdefault"] != 5 {
		t.Fatalf("hello: %d %+v", st, w)
	}
	// A copy of l3's data directory sends other messages under numbers the
	// incarnation has used: taken and counted, never dropped as resends.
	clone := protocol.Messages{Instance: "edge:l3.a1", Queue: "$upstream/pdefault",
		Msgs: []protocol.Message{{Seq: 2, ID: "clone-2", Source: "devices/dev1", Body: []byte("the copy's")}, frame.Msgs[2]}}
	ack = protocol.MessagesAck{}
	if st := post(t, p.http.URL, protocol.PathMessages, "l3", keyL3, clone, &ack); st != 200 || ack.Collisions != 1 || ack.Appended != 1 || ack.Duplicates != 1 {
		t.Fatalf("a clone's messages: %d %+v", st, ack)
	}
	if n := len(p.upstream(t)); n != 6 {
		t.Fatalf("parent queued %d, want 6 (the clone's message too)", n)
	}
	// Another incarnation of l3 (a wiped data directory) starts afresh.
	other := protocol.Messages{Instance: "edge:l3.b2", Queue: "$upstream/pdefault", Msgs: frame.Msgs[:1]}
	if st := post(t, p.http.URL, protocol.PathMessages, "l3", keyL3, other, &ack); st != 200 || ack.Appended != 1 {
		t.Fatalf("new incarnation: %d %+v", st, ack)
	}
}

// Only this edge's children get in, each under its own instances and
// queues; everything else is refused with a reason.
func TestOnlyChildrenGetIn(t *testing.T) {
	p := openParent(t, t.TempDir())
	defer p.close()
	hello := protocol.Hello{Version: protocol.Version, Instance: "edge:l3.a1"}
	cases := []struct {
		name, dev string
		key       []byte
		in        any
		path      string
		want      int
	}{
		{"wrong key", "l3", keyOther, hello, protocol.PathHello, 401},
		{"grandchild, not a child", "l2", keyL2, protocol.Hello{Version: protocol.Version, Instance: "edge:l2.a1"}, protocol.PathHello, 403},
		{"a leaf device", "dev1", []byte("d1"), hello, protocol.PathHello, 403},
		{"another edge's instance", "ox", keyOther, hello, protocol.PathHello, 400},
		{"not an upstream queue", "l3", keyL3, protocol.Messages{Instance: "edge:l3.a1", Queue: "modules/x/inputs/i/pdefault",
			Msgs: []protocol.Message{{Seq: 1, Source: "devices/dev1"}}}, protocol.PathMessages, 400},
		{"twins", "l3", keyL3, protocol.TwinsUp{Instance: "edge:l3.a1"}, protocol.PathTwins, 501},
		{"the child", "l3", keyL3, hello, protocol.PathHello, 200},
	}
	for _, c := range cases {
		if got := post(t, p.http.URL, c.path, c.dev, c.key, c.in, nil); got != c.want {
			t.Errorf("%s: status %d, want %d", c.name, got, c.want)
		}
	}
	if n := len(p.upstream(t)); n != 0 {
		t.Errorf("queued %d", n)
	}
}

// What children send is held within the parent's caps: a full parent
// answers 507 and queues nothing, so the child keeps its backlog; its
// cursor does not move, and the same batch is taken once there is room.
func TestFullParentRefusesWithoutLoss(t *testing.T) {
	p := openParent(t, t.TempDir())
	defer p.close()
	q, err := p.queues.Queue("$upstream/pdefault", queue.QueueOptions{MaxCount: 2})
	if err != nil {
		t.Fatal(err)
	}
	frame := protocol.Messages{Instance: "edge:l3.a1", Queue: "$upstream/pdefault"}
	for s := uint64(1); s <= 3; s++ {
		frame.Msgs = append(frame.Msgs, protocol.Message{Seq: s, ID: fmt.Sprint(s), Source: "devices/dev1", Body: []byte("x")})
	}
	if st := post(t, p.http.URL, protocol.PathMessages, "l3", keyL3, frame, nil); st != http.StatusInsufficientStorage {
		t.Fatalf("a batch past the cap: status %d, want 507", st)
	}
	if n := len(p.upstream(t)); n != 0 {
		t.Fatalf("queued %d of a refused batch", n)
	}
	if _, err := p.queues.Queue(q.Name(), queue.QueueOptions{}); err != nil { // room again
		t.Fatal(err)
	}
	var ack protocol.MessagesAck
	if st := post(t, p.http.URL, protocol.PathMessages, "l3", keyL3, frame, &ack); st != 200 || ack.Appended != 3 || ack.Duplicates != 0 {
		t.Fatalf("the same batch with room: %d %+v", st, ack)
	}
}

// Requests past MaxRequests are answered 503 at once, not queued.
func TestRequestsBounded(t *testing.T) {
	dir := t.TempDir()
	p := openParent(t, dir)
	p.http.Close()
	srv, err := New(Options{Edge: "l4", HostName: hostName, DB: p.db, Queues: p.queues, Identities: p.ids, PullWait: 2 * time.Second, MaxRequests: 1})
	if err != nil {
		t.Fatal(err)
	}
	p.http = httptest.NewServer(srv.Handler())
	defer p.close()
	var scope protocol.Push
	pull := protocol.Pull{Instance: "edge:l3.a1", WaitMs: 2000}
	if st := post(t, p.http.URL, protocol.PathPull, "l3", keyL3, pull, &scope); st != 200 || !scope.HasScope {
		t.Fatalf("first pull: %d %+v", st, scope)
	}
	pull.Scope = scope.Scope
	held := make(chan int, 1)
	go func() { held <- post(t, p.http.URL, protocol.PathPull, "l3", keyL3, pull, nil) }() // held for 2 s
	eventually(t, "the pull held", func() bool { return len(srv.slots) == 1 })
	if st := post(t, p.http.URL, protocol.PathHello, "l3", keyL3, protocol.Hello{Version: protocol.Version, Instance: "edge:l3.a1"}, nil); st != http.StatusServiceUnavailable {
		t.Errorf("a request past the bound: status %d, want 503", st)
	}
	if st := <-held; st != 200 {
		t.Errorf("the held pull: %d", st)
	}
}

// Cloud-to-device messages for a device below the child, queued here by
// this edge's link, reach the child, once, and leave this edge's queue
// when the child has stored them.
func TestC2DThroughParent(t *testing.T) {
	p := openParent(t, t.TempDir())
	defer p.close()
	q, err := p.queues.Queue(C2DQueue("dev1"), queue.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := startChild(t, p.http.URL)
	eventually(t, "the child's identities", func() bool { _, ok, _ := c.ids.Get("dev1"); return ok })
	for _, body := range []string{"one", "two"} {
		if _, err := q.Append(context.Background(), queue.Message{Body: []byte(body)}); err != nil {
			t.Fatal(err)
		}
		p.srv.C2DAppended()
	}
	eventually(t, "both at the child", func() bool { return len(c.rec.got()) == 2 })
	eventually(t, "the parent's queue emptied", func() bool { return q.Stats().Depth == 0 })
	if got := c.rec.got(); !slices.Equal(got, []string{"dev1:one", "dev1:two"}) {
		t.Errorf("the child stored %v", got)
	}
	time.Sleep(700 * time.Millisecond) // more pulls: nothing is sent twice
	if n := len(c.rec.got()); n != 2 {
		t.Errorf("the child stored %d messages, want 2", n)
	}
}

// A direct method for a device below the child goes to the child's pull
// and its answer comes back; a child that is not connected is 404.
func TestMethodThroughParent(t *testing.T) {
	p := openParent(t, t.TempDir())
	defer p.close()
	c := startChild(t, p.http.URL)
	eventually(t, "the child online", func() bool { return c.link.Status().State == "online" })
	if got := p.srv.ChildOf("dev1"); got != "l3" {
		t.Fatalf("ChildOf(dev1) = %q", got)
	}
	r := p.srv.Invoke(context.Background(), "l3", "dev1", "reboot", []byte(`{"delay":1}`), 5*time.Second)
	if r.Status != 200 || string(r.Payload) != `{"answer":"reboot","from":"dev1","got":{"delay":1}}` {
		t.Fatalf("answer %+v", r)
	}
	if r := p.srv.Invoke(context.Background(), "ox", "ox", "ping", nil, 100*time.Millisecond); r.Status != 404 {
		t.Errorf("a child that never pulls: %+v, want 404", r)
	}
}

// A call handed to one child is answered only by that child.
func TestMethodAnsweredByItsChildOnly(t *testing.T) {
	p := openParent(t, t.TempDir())
	defer p.close()
	done := make(chan protocol.MethodResult, 1)
	go func() { done <- p.srv.Invoke(context.Background(), "l3", "dev1", "reboot", nil, 5*time.Second) }()
	var push protocol.Push
	for deadline := time.Now().Add(5 * time.Second); len(push.Methods) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the call never reached l3's pull")
		}
		push = protocol.Push{}
		post(t, p.http.URL, protocol.PathPull, "l3", keyL3, protocol.Pull{Instance: "edge:l3.a1", WaitMs: 200, Scope: "-"}, &push)
	}
	answer := protocol.MethodResult{ID: push.Methods[0].ID, Status: 200, Payload: []byte(`{"by":"l3"}`)}
	var none struct{}
	if st := post(t, p.http.URL, protocol.PathMethods, "ox", keyOther, answer, &none); st != 404 {
		t.Errorf("another child answering l3's call: status %d, want 404", st)
	}
	if st := post(t, p.http.URL, protocol.PathMethods, "l3", keyL3, answer, &none); st != 200 {
		t.Errorf("l3 answering its call: status %d", st)
	}
	if r := <-done; r.Status != 200 || string(r.Payload) != `{"by":"l3"}` {
		t.Errorf("the call's answer: %+v", r)
	}
}

// One child cannot take the others' turn: past MaxPerChild requests in
// flight it is answered 429 with Retry-After (its link waits it out), and
// another child is still served.
func TestChildInFlightBounded(t *testing.T) {
	p := openParent(t, t.TempDir())
	p.http.Close()
	srv, err := New(Options{Edge: "l4", HostName: hostName, DB: p.db, Queues: p.queues, Identities: p.ids, PullWait: 2 * time.Second, MaxPerChild: 1})
	if err != nil {
		t.Fatal(err)
	}
	p.srv, p.http = srv, httptest.NewServer(srv.Handler())
	defer p.close()
	var scope protocol.Push
	pull := protocol.Pull{Instance: "edge:l3.a1", WaitMs: 2000}
	if st := post(t, p.http.URL, protocol.PathPull, "l3", keyL3, pull, &scope); st != 200 {
		t.Fatalf("first pull: %d", st)
	}
	pull.Scope = scope.Scope
	held := make(chan int, 1)
	go func() { held <- post(t, p.http.URL, protocol.PathPull, "l3", keyL3, pull, nil) }()
	eventually(t, "the pull held", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return srv.inFlight["l3"] == 1
	})
	hello := func(dev string, key []byte) int {
		return post(t, p.http.URL, protocol.PathHello, dev, key, protocol.Hello{Version: protocol.Version, Instance: "edge:" + dev + ".a1"}, nil)
	}
	if st := hello("l3", keyL3); st != http.StatusTooManyRequests {
		t.Errorf("l3 past its bound: status %d, want 429", st)
	}
	if st := hello("ox", keyOther); st != 200 {
		t.Errorf("another child meanwhile: status %d, want 200", st)
	}
	if st := <-held; st != 200 {
		t.Errorf("the held pull: %d", st)
	}
	if st := hello("l3", keyL3); st != 200 {
		t.Errorf("l3 after its pull ended: %d", st)
	}
	if b := srv.Stats().Busy; b != 1 {
		t.Errorf("busy %d, want 1", b)
	}
}

// A parent reports its children, and what each reported of the edges
// below it (only its own subtree), for its own pull: the hub shows the tree.
func TestReportTree(t *testing.T) {
	p := openParent(t, t.TempDir())
	defer p.close()
	pull := protocol.Pull{Instance: "edge:l3.a1", Backlog: 4, Children: []protocol.ChildStatus{
		{Edge: "l2", Parent: "l3", LastSeen: 1, Backlog: 2},
		{Edge: "ox", Parent: "l3", LastSeen: 1, Backlog: 9}, // not below l3
	}}
	if st := post(t, p.http.URL, protocol.PathPull, "l3", keyL3, pull, nil); st != 200 {
		t.Fatalf("pull: %d", st)
	}
	var got []string
	for _, c := range p.srv.Report() {
		got = append(got, fmt.Sprintf("%s<%s:%d", c.Edge, c.Parent, c.Backlog))
	}
	if want := []string{"l3<l4:4", "l2<l3:2"}; !slices.Equal(got, want) {
		t.Errorf("report %v, want %v", got, want)
	}
}

// A child's incarnations are bounded: past maxIncarnations the one that
// sent last longest ago is forgotten (its cursors and digests), so a child
// cannot grow the parent's state by inventing instance ids.
func TestIncarnationsBounded(t *testing.T) {
	p := openParent(t, t.TempDir())
	defer p.close()
	send := func(inst string) {
		t.Helper()
		frame := protocol.Messages{Instance: inst, Queue: "$upstream/pdefault", Msgs: []protocol.Message{{Seq: 1, ID: inst, Source: "devices/dev1"}}}
		var ack protocol.MessagesAck
		if st := post(t, p.http.URL, protocol.PathMessages, "l3", keyL3, frame, &ack); st != 200 || ack.Appended != 1 {
			t.Fatalf("%s: %d %+v", inst, st, ack)
		}
	}
	for i := range maxIncarnations + 1 {
		send(fmt.Sprintf("edge:l3.i%d", i))
	}
	cursorOf := func(inst string) uint64 {
		var w protocol.Welcome
		if st := post(t, p.http.URL, protocol.PathHello, "l3", keyL3, protocol.Hello{Version: protocol.Version, Instance: inst}, &w); st != 200 {
			t.Fatalf("hello: %d", st)
		}
		return w.Cursors["$upstream/pdefault"]
	}
	if c := cursorOf("edge:l3.i0"); c != 0 {
		t.Errorf("the oldest incarnation's cursor is %d, want it forgotten", c)
	}
	if c := cursorOf(fmt.Sprintf("edge:l3.i%d", maxIncarnations)); c != 1 {
		t.Errorf("the newest incarnation's cursor is %d, want 1", c)
	}
	digests := 0
	err := p.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: digestPrefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			digests++
		}
		return nil
	})
	if err != nil || digests != maxIncarnations {
		t.Errorf("%d digests kept (%v), want %d", digests, err, maxIncarnations)
	}
	if n := len(p.upstream(t)); n != maxIncarnations+1 {
		t.Errorf("queued %d, want %d: forgetting an incarnation drops nothing", n, maxIncarnations+1)
	}
}

// A child's report of the clients below it is kept for this edge to send
// up with its own: what is in the child's subtree, and only that; a full
// report (its pull's) replaces what it said before, a change updates it.
func TestChildPresence(t *testing.T) {
	p := openParent(t, t.TempDir())
	defer p.close()
	var none struct{}
	report := protocol.PresenceReport{Instance: "edge:l3.a1", Presence: []protocol.Presence{
		{ID: "dev1", Connected: true, Since: 10, Activity: 20}, {ID: "l3/m", Connected: true, Since: 11},
		{ID: "other", Connected: true, Since: 12}}}
	if st := post(t, p.http.URL, protocol.PathPresence, "l3", keyL3, report, &none); st != 200 {
		t.Fatalf("presence report: %d", st)
	}
	ids := func() string {
		var out []string
		for _, c := range p.srv.ChildClients() {
			out = append(out, c.ID)
		}
		return strings.Join(out, ",")
	}
	if got := ids(); got != "dev1,l3/m" {
		t.Fatalf("after the report: %s (other is not below l3)", got)
	}
	report.Presence = []protocol.Presence{{ID: "l3/m", Since: 30}}
	post(t, p.http.URL, protocol.PathPresence, "l3", keyL3, report, &none)
	if got := ids(); got != "dev1" {
		t.Fatalf("after l3/m left: %s", got)
	}
	var push protocol.Push
	post(t, p.http.URL, protocol.PathPull, "l3", keyL3, protocol.Pull{Instance: "edge:l3.a1", WaitMs: 10, Scope: "-",
		PresenceFull: true, Presence: []protocol.Presence{{ID: "l3/m", Connected: true, Since: 40}}}, &push)
	if got := ids(); got != "l3/m" {
		t.Fatalf("after a full report: %s", got)
	}
}
