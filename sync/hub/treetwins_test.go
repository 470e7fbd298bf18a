package hub

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// edgeReplica opens the twin replica of edge device name (as its edge
// would, in memory): its fields carry "edge:<name>.<incarnation>".
func edgeReplica(t *testing.T, f *fixture, name string) *twin.Store {
	t.Helper()
	db, err := kv.Open("", kv.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ts, err := twin.Open(f.ctx, db, twin.Options{Role: twin.Edge, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// report patches reported properties of twin id on replica ts and returns
// its whole delta, as a parent edge relays it unchanged.
func report(t *testing.T, f *fixture, ts *twin.Store, id, doc string) twin.Batch {
	t.Helper()
	s, err := ts.BeginSession()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.PatchReported(f.ctx, id, s, []byte(doc)); err != nil {
		t.Fatal(err)
	}
	b, _, err := ts.Delta(crdt.VV{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// twinsUp posts b as a TwinsUp of edge's instance "edge:<edge>.a", with
// the current generation of every twin in it; for a refusal, the
// error's message.
func (f *fixture) twinsUp(t *testing.T, edge string, b twin.Batch) (int, string) {
	t.Helper()
	gens := protocol.Generations{}
	for _, td := range b.Twins {
		if id, err := f.h.Identity(td.ID); err == nil {
			gens[td.ID] = id.Generation
		}
	}
	code, body := f.frameAs(t, edge, protocol.PathTwins, protocol.TwinsUp{Instance: "edge:" + edge + ".a", Batch: b, Generations: gens}, &protocol.TwinsAck{})
	var e struct{ Message string }
	if code != 200 && json.Unmarshal(body, &e) == nil {
		return code, e.Message
	}
	return code, string(body)
}

func (f *fixture) reported(t *testing.T, id string) string {
	t.Helper()
	code, body := f.do(t, "GET", "/twins/"+strings.Replace(id, "/", "/modules/", 1), ownerToken(), nil, nil)
	if code != 200 {
		t.Fatalf("GET /twins/%s: %d %s", id, code, body)
	}
	_, rep, _ := strings.Cut(string(body), `"reported":`)
	return rep
}

// The top edge relays the twin writes of the edges below it, stamped by
// them: the hub takes a field written by a child edge's incarnation for a
// twin in that child's subtree, and refuses (400, counted) one for a twin
// outside it, or written by an edge that is not below the sender.
func TestNestedEdgeTwins(t *testing.T) {
	f := nestedFixture(t)
	for _, c := range []struct{ sender, writer, twin string }{
		{"l4", "l3", "s3"},   // a leaf of the child edge
		{"l4", "l3", "s3/m"}, // its module
		{"l4", "l3", "l3"},   // the child edge's own twin
		{"l4", "l2", "s2"},   // two edges down
		{"l4", "l3", "s2"},   // in l3's subtree, below l2
		{"l4", "l4", "s4"},   // the sender's own, as before
	} {
		b := report(t, f, edgeReplica(t, f, c.writer), c.twin, `{"by`+c.writer+`":1}`)
		if code, body := f.twinsUp(t, c.sender, b); code != 200 {
			t.Errorf("%s relaying %s's write of %s: %d %s", c.sender, c.writer, c.twin, code, body)
			continue
		}
		if rep := f.reported(t, c.twin); !strings.Contains(rep, `"by`+c.writer+`":1`) {
			t.Errorf("%s's write of %s is not in its reported properties: %s", c.writer, c.twin, rep)
		}
	}
	refused := f.h.metrics.framesRefused.Load()
	for _, c := range []struct{ sender, writer, twin, want string }{
		{"l4", "l3", "s4", `written by edge "l3", whose scope does not hold it`},                 // a leaf directly under l4
		{"l4", "l3", "l4", `written by edge "l3", whose scope does not hold it`},                 // its parent's own twin
		{"l4", "l2", "s3", `written by edge "l2", whose scope does not hold it`},                 // its parent's leaf
		{"l4", "l3", "dev1", `not in the scope of edge "l4"`},                                    // another tree's leaf
		{"l4", "gw1", "s3", "an edge sends only its own writes and those of the edges below it"}, // an edge outside l4's tree
		{"l4", "s3", "s3", "an edge sends only its own writes and those of the edges below it"},  // a leaf is no edge
		{"l4", "l3/m", "s3", "an edge sends only its own writes and those of the edges below it"},
	} {
		b := report(t, f, edgeReplica(t, f, c.writer), c.twin, `{"refused":1}`)
		if code, body := f.twinsUp(t, c.sender, b); code != 400 || !strings.Contains(body, c.want) {
			t.Errorf("%s relaying %s's write of %s: %d %s, want 400 with %q", c.sender, c.writer, c.twin, code, body, c.want)
		}
		if rep := f.reported(t, c.twin); strings.Contains(rep, "refused") {
			t.Errorf("a refused write reached %s: %s", c.twin, rep)
		}
		refused++
		if n := f.h.metrics.framesRefused.Load(); n != refused {
			t.Errorf("%s relaying %s's write of %s: %d frames refused, want %d", c.sender, c.writer, c.twin, n, refused)
			refused = n
		}
	}
}

// A twin created again elsewhere in the tree: the child edge's writes for
// its old generation are refused as any old generation's (counted,
// acknowledged), not with a 400 that would hold up the parent's twin link.
func TestNestedEdgeTwinOldGeneration(t *testing.T) {
	f := nestedFixture(t)
	old, _ := f.h.Identity("s3")
	b := report(t, f, edgeReplica(t, f, "l3"), "s3", `{"old":1}`)
	if err := f.h.DeleteDevice(f.ctx, "s3"); err != nil {
		t.Fatal(err)
	}
	f.mustPutDevice(t, "s3", false, "l4")
	var ack protocol.TwinsAck
	up := protocol.TwinsUp{Instance: "edge:l4.a", Batch: b, Generations: protocol.Generations{"s3": old.Generation}}
	if code, body := f.frameAs(t, "l4", protocol.PathTwins, up, &ack); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if rep := f.reported(t, "s3"); strings.Contains(rep, "old") || f.h.metrics.twinsStale.Load() != 1 {
		t.Errorf("reported %s, %d twins stale; want the old write refused and counted once", rep, f.h.metrics.twinsStale.Load())
	}
}

// Commits (which advance the hub's version vector) likewise: only for
// incarnations of the sender and of the edges below it.
func TestNestedEdgeTwinCommits(t *testing.T) {
	f := nestedFixture(t)
	for _, c := range []struct {
		sender, origin string
		ok             bool
	}{
		{"l4", "edge:l4.a", true},
		{"l4", "edge:l3.a1", true},
		{"l4", "edge:l2.a1", true},
		{"l4", "edge:gw1.a1", false},
		{"l4", "edge:s3.a1", false}, // a leaf
		{"l4", "hub.1", false},
	} {
		b := twin.Batch{Commits: []crdt.Commit{{Origin: crdt.ReplicaID(c.origin), UpTo: 7}}}
		code, body := f.twinsUp(t, c.sender, b)
		switch {
		case c.ok && code != 200:
			t.Errorf("%s committing %s: %d %s", c.sender, c.origin, code, body)
		case !c.ok && (code != 400 || !strings.Contains(body, "an edge commits only its own writes and those of the edges below it")):
			t.Errorf("%s committing %s: %d %s, want 400", c.sender, c.origin, code, body)
		}
		if got := f.h.twins().VV()[crdt.ReplicaID(c.origin)]; c.ok != (got == 7) {
			t.Errorf("%s committing %s: the hub's version vector holds %d of it", c.sender, c.origin, got)
		}
	}
	if n := f.h.metrics.framesRefused.Load(); n != 3 {
		t.Errorf("%d frames refused, want 3", n)
	}
}

// A twin below a child edge has one member, the top edge of its tree: its
// tombstones wait for l4's pull (l3 never pulls from the hub) and go once
// l4 acknowledges them.
func TestNestedGCWaitsForTheTopEdge(t *testing.T) {
	f := nestedFixture(t)
	l3 := edgeReplica(t, f, "l3")
	report(t, f, l3, "s3", `{"fw":{"v":1}}`)
	b := report(t, f, l3, "s3", `{"fw":null}`)
	if code, body := f.twinsUp(t, "l4", b); code != 200 {
		t.Fatalf("twins: %d %s", code, body)
	}
	f.h.collectGarbage(f.ctx)
	tombs := func() int { n, _ := f.h.twins().Tombstones("s3"); return n }
	if tombs() == 0 {
		t.Fatal("no tombstone for the deleted reported property before l4 acknowledged it")
	}
	// l3 cannot ack at the hub (it links through l4), and nothing is
	// collected before l4 does.
	pull := protocol.Pull{Instance: "edge:l3.a", TwinVV: f.h.twins().VV(), WaitMs: 10}
	if code, _ := f.frameAs(t, "l3", protocol.PathPull, pull, &protocol.Push{}); code != 403 || tombs() == 0 {
		t.Fatalf("after l3's pull (%d): %d tombstones, want some", code, tombs())
	}
	pull.Instance = "edge:l4.a"
	if code, body := f.frameAs(t, "l4", protocol.PathPull, pull, &protocol.Push{}); code != 200 {
		t.Fatalf("pull: %d %s", code, body)
	}
	if tombs() != 0 || f.h.metrics.twinGC.Load() == 0 {
		t.Fatalf("s3 keeps %d tombstones after l4 acknowledged them", tombs())
	}
	if rep := f.reported(t, "s3"); strings.Contains(rep, "fw") {
		t.Errorf("the deleted property is back: %s", rep)
	}
}
