package hub

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// putDevice creates or updates a device through the REST API: an edge when
// edge is set, with the deviceScope of parent (when not "") in
// parentScopes.
func (f *fixture) putDevice(t *testing.T, id string, edge bool, parent string) (int, string) {
	t.Helper()
	j := identity.JSON{DeviceID: id, Capabilities: &identity.Capabilities{IoTEdge: edge}}
	if parent != "" {
		p, err := f.h.Identity(parent)
		if err != nil {
			t.Fatal(err)
		}
		j.ParentScopes = []string{p.DeviceScope}
	}
	body, _ := json.Marshal(j)
	code, out := f.do(t, "PUT", "/devices/"+id, ownerToken(), body, nil)
	return code, string(out)
}

func (f *fixture) putRaw(t *testing.T, id, body string) (int, string) {
	t.Helper()
	code, out := f.do(t, "PUT", "/devices/"+id, ownerToken(), []byte(body), nil)
	return code, string(out)
}

func (f *fixture) mustPutDevice(t *testing.T, id string, edge bool, parent string) {
	t.Helper()
	if code, body := f.putDevice(t, id, edge, parent); code != 200 {
		t.Fatalf("PUT /devices/%s (edge %v, parent %q): %d %s", id, edge, parent, code, body)
	}
}

// nestedFixture adds to the fixture a tree of edges l4 ← l3 ← l2 (l4 at
// the top), each with a leaf device (s4, s3, s2), and a module m of s3.
func nestedFixture(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t)
	f.mustPutDevice(t, "l4", true, "")
	f.mustPutDevice(t, "l3", true, "l4")
	f.mustPutDevice(t, "l2", true, "l3")
	for _, l := range []string{"4", "3", "2"} {
		f.mustPutDevice(t, "s"+l, false, "l"+l)
	}
	if _, err := f.h.PutModule(f.ctx, identity.JSON{DeviceID: "s3", ModuleID: "m"}); err != nil {
		t.Fatal(err)
	}
	return f
}

// frameAs posts a link frame as the edge device edge.
func (f *fixture) frameAs(t *testing.T, edge, path string, in, out any) (int, []byte) {
	t.Helper()
	e, err := f.h.Identity(edge)
	if err != nil {
		t.Fatal(err)
	}
	body, enc, err := protocol.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	hdr := map[string]string{"Content-Type": protocol.ContentType}
	if enc != "" {
		hdr["Content-Encoding"] = enc
	}
	tok := sas.NewToken("hub.test/devices/"+edge, e.Auth.PrimaryKey, "", time.Now().Add(time.Hour))
	code, data := f.do(t, "POST", path, tok, body, hdr)
	if code == 200 && out != nil {
		if err := protocol.DecodeBytes(data, out); err != nil {
			t.Fatal(err)
		}
	}
	return code, data
}

// An edge device may have a parent edge; the registry refuses a parent
// that is not an edge, cycles (also through an update) and chains of more
// than five edges, each with a 400 that says what to do.
func TestNestedEdgeRegistry(t *testing.T) {
	f := newFixture(t)
	f.mustPutDevice(t, "l4", true, "")
	code, body := f.putDevice(t, "l3", true, "l4")
	var l3 identity.JSON
	if code != 200 || json.Unmarshal([]byte(body), &l3) != nil {
		t.Fatalf("an edge under an edge: %d %s", code, body)
	}
	l4, _ := f.h.Identity("l4")
	if !slices.Equal(l3.ParentScopes, []string{l4.DeviceScope}) || l3.DeviceScope == "" || l3.DeviceScope == l4.DeviceScope ||
		l3.Capabilities == nil || !l3.Capabilities.IoTEdge {
		t.Fatalf("child edge: %s", body)
	}
	if _, err := f.h.Identity("l3/$edgeHub"); err != nil {
		t.Fatalf("a child edge has its system modules: %v", err)
	}
	f.mustPutDevice(t, "s3", false, "l3") // a leaf under a child edge: as under any edge
	refuse := func(what, id string, edge bool, parent, want string) {
		t.Helper()
		if code, body := f.putDevice(t, id, edge, parent); code != 400 || !strings.Contains(body, want) {
			t.Errorf("%s: %d %s, want 400 with %q", what, code, body, want)
		}
	}
	refuse("an edge its own parent", "l4", true, "l4", "would be its own ancestor")
	refuse("the top edge under its child (an update)", "l4", true, "l3", "would be its own ancestor (l4 → l3 → l4)")
	code, body = f.putRaw(t, "e", `{"deviceId":"e","capabilities":{"iotEdge":true},"parentScopes":["ms-azure-iot-edge://nobody-1"]}`)
	if code != 400 || !strings.Contains(body, "not the deviceScope of an edge device") {
		t.Errorf("a parent that is not an edge: %d %s", code, body)
	}
	// Five edges deep at most: l4 l3 e2 e1 e0; a leaf may hang under the fifth.
	f.mustPutDevice(t, "e2", true, "l3")
	f.mustPutDevice(t, "e1", true, "e2")
	f.mustPutDevice(t, "e0", true, "e1")
	f.mustPutDevice(t, "leaf0", false, "e0")
	refuse("a sixth edge", "e00", true, "e0", "edges nest at most 5 deep")
	// Moving an edge with an edge below it: its subtree counts.
	f.mustPutDevice(t, "x", true, "")
	f.mustPutDevice(t, "y", true, "x")
	refuse("a subtree of two under the fourth edge", "x", true, "e1", "chain of 6 (x → e1 → e2 → l3 → l4, and 1 below")
	f.mustPutDevice(t, "x", true, "e2") // under the third: five
	if in, _ := f.h.inScope("l4"); !in("y") {
		t.Errorf("y did not move with x into l4's scope")
	}
	// A parent stays an edge, with its scope, while it has children.
	refuse("a parent made a leaf", "l3", false, "l4", "is the parent of e2, s3")
	code, body = f.putRaw(t, "l3", `{"deviceId":"l3","capabilities":{"iotEdge":true},"deviceScope":"ms-azure-iot-edge://new-1","parentScopes":["`+l4.DeviceScope+`"]}`)
	if code != 400 || !strings.Contains(body, "stays an edge device with its deviceScope") {
		t.Errorf("a parent's scope changed: %d %s", code, body)
	}
	code, body = f.putRaw(t, "z", `{"deviceId":"z","capabilities":{"iotEdge":true},"deviceScope":"`+l4.DeviceScope+`"}`)
	if code != 400 || !strings.Contains(body, "'s; leave deviceScope out") {
		t.Errorf("another edge's deviceScope: %d %s", code, body)
	}
	// Updates that keep the tree as it is go through (keys, status).
	code, body = f.putRaw(t, "l3", `{"deviceId":"l3","status":"disabled","capabilities":{"iotEdge":true},"parentScopes":["`+l4.DeviceScope+`"]}`)
	if code != 200 {
		t.Errorf("an update of a child edge: %d %s", code, body)
	}
}

// The scope of an edge holds its whole subtree: the edges below it, their
// modules, leaves and their modules; a child edge's holds only its own.
func TestNestedEdgeScope(t *testing.T) {
	f := nestedFixture(t)
	sub := func(edges ...string) []string {
		var out []string
		for _, e := range edges {
			out = append(out, e, e+"/$edgeAgent", e+"/$edgeHub", "s"+e[1:])
		}
		if slices.Contains(edges, "l3") {
			out = append(out, "s3/m")
		}
		slices.Sort(out)
		return out
	}
	for edge, want := range map[string][]string{"l4": sub("l4", "l3", "l2"), "l3": sub("l3", "l2"), "l2": sub("l2")} {
		ids, _, err := f.h.scope(edge)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, id := range ids {
			got = append(got, id.ID())
		}
		if !slices.Equal(got, want) {
			t.Errorf("scope of %s: %v, want %v", edge, got, want)
		}
		in, err := f.h.inScope(edge)
		if err != nil {
			t.Fatal(err)
		}
		all, _ := f.h.ids().List()
		for _, id := range all {
			if _, ok := slices.BinarySearch(want, id.ID()); in(id.ID()) != ok {
				t.Errorf("%s: inScope(%s) %v, scope %v", edge, id.ID(), in(id.ID()), ok)
			}
		}
	}
	// The top edge's pull carries the subtree: identities, twin changes
	// and cloud-to-device messages of a leaf two edges down.
	if code, body := f.do(t, "PATCH", "/twins/s2", ownerToken(), []byte(`{"properties":{"desired":{"interval":10}}}`), nil); code != 200 {
		t.Fatalf("patch: %d %s", code, body)
	}
	code, body := f.do(t, "POST", "/devices/s2/messages/deviceBound", ownerToken(), []byte("hi"), nil)
	if code >= 300 {
		t.Fatalf("c2d: %d %s", code, body)
	}
	var push protocol.Push
	if code, body := f.frameAs(t, "l4", protocol.PathPull, protocol.Pull{Instance: "edge:l4.a"}, &push); code != 200 {
		t.Fatalf("pull: %d %s", code, body)
	}
	var ids []string
	for _, id := range push.Identities {
		ids = append(ids, id.DeviceID+map[bool]string{true: "/" + id.ModuleID}[id.ModuleID != ""])
	}
	if !slices.Equal(ids, sub("l4", "l3", "l2")) {
		t.Errorf("identities pushed to l4: %v", ids)
	}
	var twins []string
	for _, td := range push.Twins.Twins {
		twins = append(twins, td.ID)
	}
	if !slices.Contains(twins, "s2") || push.Generations["s2"] == "" {
		t.Errorf("twin deltas pushed to l4: %v (generations %v), want s2's", twins, push.Generations)
	}
	if len(push.C2D) != 1 || push.C2D[0].Device != "s2" || string(push.C2D[0].Body) != "hi" {
		t.Errorf("cloud-to-device messages pushed to l4: %+v", push.C2D)
	}
	// A pull acknowledges the subtree's messages: the next has none.
	push = protocol.Push{}
	p := protocol.Pull{Instance: "edge:l4.a", C2D: map[string]uint64{"s2": 1}, Hub: string(f.h.twins().Replica())}
	if code, body := f.frameAs(t, "l4", protocol.PathPull, p, &push); code != 200 || len(push.C2D) != 0 {
		t.Errorf("pull after the ack: %d %s %+v", code, body, push.C2D)
	}
}

// The top edge sends the messages of its subtree with the edges they
// crossed (EdgePath); the hub stores the full path, the sender last, and
// refuses (acknowledged, counted, never stored) a path that is not the way
// up from the message's source.
func TestNestedEdgeMessages(t *testing.T) {
	f := nestedFixture(t)
	good := []protocol.Message{
		{ID: "s4", Source: "devices/s4"},                                                   // l4's own leaf
		{ID: "l4-module", Source: "devices/l4/modules/$edgeHub"},                           // l4's own module
		{ID: "s3", Source: "devices/s3", EdgePath: []string{"l3"}},                         // through l3
		{ID: "s3-module", Source: "devices/s3/modules/m", EdgePath: []string{"l3"}},        // a leaf's module, through l3
		{ID: "l3-module", Source: "devices/l3/modules/$edgeHub", EdgePath: []string{"l3"}}, // the child edge's own
		{ID: "s2", Source: "devices/s2", EdgePath: []string{"l2", "l3"}},                   // two edges down
	}
	bad := []protocol.Message{
		{ID: "no-path", Source: "devices/s3"},                                     // came through l3, says nothing
		{ID: "short", Source: "devices/s2", EdgePath: []string{"l3"}},             // skips l2
		{ID: "skip", Source: "devices/s2", EdgePath: []string{"l2"}},              // l2's parent is not l4
		{ID: "wrong-entry", Source: "devices/s3", EdgePath: []string{"l2", "l3"}}, // s3 is not l2's
		{ID: "twice", Source: "devices/s3", EdgePath: []string{"l3", "l3"}},       // l3's parent is not l3
		{ID: "leaf-in-path", Source: "devices/s3/modules/m", EdgePath: []string{"s3", "l3"}},
		{ID: "module-in-path", Source: "devices/s3", EdgePath: []string{"l3/$edgeHub"}},
		{ID: "ghost", Source: "devices/s3", EdgePath: []string{"nobody"}},
		{ID: "own-with-path", Source: "devices/s4", EdgePath: []string{"l4"}}, // the sender is not in the path
		{ID: "long", Source: "devices/s2", EdgePath: []string{"l2", "l3", "l2", "l3", "l2", "l3"}},
	}
	frame := protocol.Messages{Instance: "edge:l4.a", Queue: "$upstream/pdefault"}
	for i, m := range append(append(slices.Clone(good[:3]), bad...), good[3:]...) {
		m.Seq = uint64(i + 1)
		frame.Msgs = append(frame.Msgs, m)
	}
	frame.Msgs = append(frame.Msgs, protocol.Message{Seq: uint64(len(frame.Msgs) + 1), ID: "out", Source: "devices/dev1"}) // gw1's
	var ack protocol.MessagesAck
	if code, body := f.frameAs(t, "l4", protocol.PathMessages, frame, &ack); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if ack.Appended != len(good) || ack.Refused != len(bad)+1 || ack.UpTo != uint64(len(frame.Msgs)) {
		t.Errorf("ack %+v, want %d appended, %d refused, up to %d", ack, len(good), len(bad)+1, len(frame.Msgs))
	}
	if n, s := f.h.metrics.eventsBadPath.Load(), f.h.metrics.eventsRefused.Load(); n != int64(len(bad)) || s != 1 {
		t.Errorf("refused for the path %d, for the scope %d; want %d and 1", n, s, len(bad))
	}
	code, body := f.do(t, "GET", "/messages/events?from=1", ownerToken(), nil, nil)
	var evs []map[string]any
	if code != 200 || json.Unmarshal(body, &evs) != nil {
		t.Fatalf("%d %s", code, body)
	}
	want := map[string]string{"s4": `["l4"]`, "l4-module": `["l4"]`, "s3": `["l3","l4"]`, "s3-module": `["l3","l4"]`,
		"l3-module": `["l3","l4"]`, "s2": `["l2","l3","l4"]`}
	for _, e := range evs {
		path, _ := json.Marshal(e["edgePath"])
		if id, _ := e["messageId"].(string); want[id] != string(path) {
			t.Errorf("event %s: edgePath %s, want %s", id, path, want[id])
		}
		delete(want, e["messageId"].(string))
	}
	if len(want) != 0 {
		t.Errorf("events not stored: %v", want)
	}
	if !strings.Contains(string(body), `"systemProperties":{},"edgePath":["l2","l3","l4"],"body":`) {
		t.Errorf("edgePath is not where the REST shape has it:\n%s", body)
	}
	// A child edge links through its parent, never to the hub.
	frame = protocol.Messages{Instance: "edge:l3.a", Queue: "$upstream/pdefault", Msgs: []protocol.Message{
		{Seq: 1, ID: "s2b", Source: "devices/s2", EdgePath: []string{"l2"}}}}
	if code, body := f.frameAs(t, "l3", protocol.PathMessages, frame, nil); code != 403 || !strings.Contains(string(body), "links through it") {
		t.Errorf("l3's own frame at the hub: %d %s, want 403", code, body)
	}
}

// Events stored before nested edges have no edge path: they decode, and
// the REST shape leaves edgePath out; an appendEvents entry of version 2
// (an older hub's) stores none.
func TestEventsWithoutEdgePath(t *testing.T) {
	type oldEvent struct { // Event as hubs before nested edges wrote it
		DeviceID     string `cbor:"1,keyasint"`
		EnqueuedTime int64  `cbor:"3,keyasint"`
		MessageID    string `cbor:"4,keyasint,omitempty"`
		Body         []byte `cbor:"7,keyasint,omitempty"`
	}
	b, err := kv.Marshal(oldEvent{DeviceID: "dev1", EnqueuedTime: 1, MessageID: "m", Body: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	var e Event
	if err := kv.Unmarshal(b, &e); err != nil || e.DeviceID != "dev1" || e.EdgePath != nil {
		t.Fatalf("old event: %+v, %v", e, err)
	}
	if j, _ := json.Marshal(e.JSON()); strings.Contains(string(j), "edgePath") {
		t.Errorf("an event without a path shows one: %s", j)
	}
	f := newFixture(t)
	cmd := appendEvents{Edge: "gw1", Frame: protocol.Messages{Instance: "edge:gw1.a", Queue: "q", Msgs: []protocol.Message{{Seq: 1, Source: "devices/dev1"}}}}
	body, _ := kv.Marshal(cmd)
	entry, _ := kv.Marshal(envelope{V: 2, T: cmdAppendEvents, At: 1_700_000_000_000, B: body})
	if _, err := f.h.fsm.Apply(entry); err != nil {
		t.Fatal(err)
	}
	entry, _ = encodeCommand(appendEvents{Edge: "gw1", Frame: protocol.Messages{Instance: "edge:gw1.a", Queue: "q",
		Msgs: []protocol.Message{{Seq: 2, Source: "devices/dev1"}}}}, 1_700_000_000_000)
	if _, err := f.h.fsm.Apply(entry); err != nil {
		t.Fatal(err)
	}
	evs, _ := f.h.Events(1, 10)
	if len(evs) != 2 || evs[0].EdgePath != nil || !slices.Equal(evs[1].EdgePath, []string{"gw1"}) {
		t.Errorf("events of a version 2 and a version 3 entry: %+v", evs)
	}
}

// A direct method for a device two edges down goes to the top edge of its
// tree, the one that pulls from the hub, and its answer comes back from it.
func TestNestedMethodGoesToTopEdge(t *testing.T) {
	f := nestedFixture(t)
	pushed := make(chan protocol.Push, 1)
	go func() {
		var push protocol.Push
		f.frameAs(t, "l4", protocol.PathPull, protocol.Pull{Instance: "edge:l4.a", WaitMs: 10000, Scope: "x"}, &push)
		pushed <- push
	}()
	// The first pull answers at once (the identities); the next one waits.
	<-pushed
	go func() {
		var push protocol.Push
		f.frameAs(t, "l4", protocol.PathPull, protocol.Pull{Instance: "edge:l4.a", WaitMs: 10000, Scope: "any"}, &push)
		pushed <- push
	}()
	for deadline := time.Now().Add(5 * time.Second); !f.h.edges.online("l4"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("l4 never online")
		}
	}
	type result struct {
		status int
		body   []byte
		err    error
	}
	done := make(chan result, 1)
	go func() {
		s, b, err := f.h.InvokeMethod(f.ctx, "s2", protocol.MethodRequest{MethodName: "reboot", Payload: []byte(`{}`), ResponseTimout: 5})
		done <- result{s, b, err}
	}()
	var call protocol.MethodCall
	select {
	case p := <-pushed:
		if len(p.Methods) != 1 || p.Methods[0].Target != "s2" {
			t.Fatalf("l4's pull carried %+v, want the call for s2", p.Methods)
		}
		call = p.Methods[0]
	case <-time.After(10 * time.Second):
		t.Fatal("the call never reached l4")
	}
	if code, body := f.frameAs(t, "l4", protocol.PathMethods, protocol.MethodResult{ID: call.ID, Status: 200, Payload: []byte(`{"ok":1}`)}, nil); code != 200 {
		t.Fatalf("answer: %d %s", code, body)
	}
	if r := <-done; r.err != nil || r.status != 200 || string(r.body) != `{"ok":1}` {
		t.Errorf("InvokeMethod: %+v", r)
	}
}

// The hub shows the tree: each edge's parent, and the edges below a top
// edge as it reports them with its pulls (only edges of its own subtree).
func TestNestedFleet(t *testing.T) {
	f := nestedFixture(t)
	f.mustPutDevice(t, "gw9", true, "") // another tree
	now := time.Now().UnixMilli()
	p := protocol.Pull{Instance: "edge:l4.a", Backlog: 3, Children: []protocol.ChildStatus{
		{Edge: "l3", Parent: "l4", LastSeen: now, Backlog: 12},
		{Edge: "l2", Parent: "l3", LastSeen: now, Backlog: 7},
		{Edge: "gw9", Parent: "l4", LastSeen: now, Backlog: 99}, // not l4's: ignored
	}}
	var push protocol.Push
	if code, body := f.frameAs(t, "l4", protocol.PathPull, p, &push); code != 200 {
		t.Fatalf("pull: %d %s", code, body)
	}
	got := map[string]EdgeStatus{}
	for _, e := range f.h.Edges() {
		got[e.DeviceID] = e
	}
	if e := got["l4"]; e.Parent != "" || e.Via != "" || e.Backlog != 3 {
		t.Errorf("l4: %+v", e)
	}
	if e := got["l3"]; e.Parent != "l4" || e.Via != "l4" || e.Backlog != 12 || !e.Online {
		t.Errorf("l3: %+v", e)
	}
	if e := got["l2"]; e.Parent != "l3" || e.Via != "l4" || e.Backlog != 7 || !e.Online {
		t.Errorf("l2: %+v", e)
	}
	if e := got["gw9"]; e.Via != "" || e.Backlog != 0 || e.Online {
		t.Errorf("gw9, reported by an edge of another tree: %+v", e)
	}
}

// An edge with child edges cannot be deleted: its children would keep a
// parent scope that names nothing, which a later edge could adopt.
func TestNestedEdgeDeleteRefusedWithChildEdges(t *testing.T) {
	f := nestedFixture(t)
	err := f.h.DeleteDevice(f.ctx, "l3")
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "child edges (l2)") {
		t.Fatalf("deleting l3 with its child edge l2: %v, want ErrInvalid naming l2", err)
	}
	if err := f.h.DeleteDevice(f.ctx, "l2"); err != nil { // leaves only below: as before
		t.Fatalf("deleting l2: %v", err)
	}
	if err := f.h.DeleteDevice(f.ctx, "l3"); err != nil {
		t.Fatalf("deleting l3 once l2 is gone: %v", err)
	}
}
