package downstream

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// withTwins gives the parent a twin store (edge l4's replica) and serves
// twins; it returns the store.
func (p *parent) withTwins(t *testing.T) *twin.Store {
	t.Helper()
	tw, err := twin.Open(context.Background(), p.db, twin.Options{Role: twin.Edge, Name: "l4"})
	if err != nil {
		t.Fatal(err)
	}
	p.http.Close()
	if p.srv, err = New(Options{Edge: "l4", HostName: hostName, DB: p.db, Queues: p.queues, Identities: p.ids, Replica: string(tw.Replica()),
		Twins: tw, PullWait: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	p.http = httptest.NewServer(p.srv.Handler())
	return tw
}

// hubDesired writes a desired patch at a cloud replica and merges it into
// the parent's store, as the parent's link does with the hub's push.
func hubDesired(t *testing.T, into *twin.Store, id, patch string) {
	t.Helper()
	ctx := context.Background()
	db, err := kv.Open(t.TempDir(), kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	hub, err := twin.Open(ctx, db, twin.Options{Role: twin.Cloud, Name: "hub"})
	if err != nil {
		t.Fatal(err)
	}
	if err := hub.Ensure(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := hub.PatchDesired(ctx, id, []byte(patch)); err != nil {
		t.Fatal(err)
	}
	b, _, err := hub.Delta(into.VV(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := into.ApplyDelta(ctx, b); err != nil {
		t.Fatal(err)
	}
}

func reported(t *testing.T, s *twin.Store, id string) string {
	t.Helper()
	v, err := s.Get(id)
	if err != nil {
		return ""
	}
	return string(v.ServiceJSON())
}

// Twins cross a parent both ways as CRDT replicas: a desired change the
// parent holds (from the hub) reaches the child; a reported change made
// under the child is at the parent at once, with the child's replica id
// and stamps, and the parent's link would send it up (Forwards). A child
// cannot write for a twin outside the subtree of the edge that wrote it.
func TestTwinsThroughParent(t *testing.T) {
	p := openParent(t, t.TempDir())
	defer p.close()
	tw := p.withTwins(t)
	hubDesired(t, tw, "dev1", `{"rate":5}`)
	c := startChild(t, p.http.URL)
	eventually(t, "the hub's desired at the child", func() bool { return strings.Contains(reported(t, c.twins, "dev1"), `"rate":5`) })

	hlc, err := c.twins.BeginSession()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.twins.PatchReported(context.Background(), "dev1", hlc, []byte(`{"temp":21}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the child's reported at the parent", func() bool { return strings.Contains(reported(t, tw, "dev1"), `"temp":21`) })
	if st := c.link.Status(); st.TwinsNotServed != "" || st.State != "online" {
		t.Errorf("child link: %+v", st)
	}
	fields, err := tw.Fields("dev1", "")
	if err != nil {
		t.Fatal(err)
	}
	var origin string
	for _, f := range fields {
		if strings.Contains(f.Path, "temp") {
			origin = f.Origin
		}
	}
	if origin != string(c.twins.Replica()) {
		t.Errorf("the parent holds the child's field as written by %q, want the child's replica %q (not re-stamped)", origin, c.twins.Replica())
	}
	if !p.srv.Forwards(c.twins.Replica()) || !p.srv.Forwards("edge:l2.a1") || !p.srv.Forwards("edge:ox.a1") ||
		p.srv.Forwards(tw.Replica()) || p.srv.Forwards("edge:zz.a1") || p.srv.Forwards("hub.x1") {
		t.Error("Forwards: want the incarnations of edges below l4 only (not l4's own, not an unknown edge's, not the hub's)")
	}

	// Fields the child may not send: refused whole, nothing merged.
	bad := func(origin crdt.ReplicaID, id string) protocol.TwinsUp {
		ts := crdt.HLC{Wall: time.Now().UnixMilli()}
		f := crdt.Field{Section: crdt.Reported, Path: crdt.Path{"x"},
			W: crdt.Write{K: crdt.Key{Session: ts, TS: ts, Origin: origin}, D: crdt.Dot{Origin: origin, Seq: 1}, Kind: crdt.Val, Value: []byte(`1`)}}
		return protocol.TwinsUp{Instance: "edge:l3.a1", Batch: twin.Batch{Twins: []twin.TwinDelta{{ID: id, Fields: []crdt.Field{f}}}}}
	}
	for name, up := range map[string]protocol.TwinsUp{
		"a field by another edge":                bad("edge:ox.a1", "dev1"),
		"a field for a twin outside the subtree": bad("edge:l3.a1", "other"),
		"l2's field for l3's own device":         bad("edge:l2.a1", "dev1"),
		"a field by the hub":                     bad("hub.x1", "dev1"),
	} {
		if st := post(t, p.http.URL, protocol.PathTwins, "l3", keyL3, up, nil); st != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", name, st)
		}
	}
	if r := reported(t, tw, "other"); strings.Contains(r, `"x"`) {
		t.Errorf("a refused field was merged: %s", r)
	}
}

// Tombstones of a twin below a child wait for that child's ack.
func TestChildMembers(t *testing.T) {
	p := openParent(t, t.TempDir())
	defer p.close()
	for id, want := range map[string]string{"dev1": "child:l3", "l3/m": "child:l3", "dev2": "child:l3", "l2": "child:l3",
		"other": "", "l4": "", "ox": "child:ox", "nobody": ""} {
		if got := strings.Join(p.srv.ChildMembers(id), ","); got != want {
			t.Errorf("ChildMembers(%s) = %q, want %q", id, got, want)
		}
	}
}
