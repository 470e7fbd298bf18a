package hub

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// Deleting a device removes its twin and its cloud-to-device queue; the
// device created again has a new generationId and starts empty.
func TestDeleteDeviceRemovesTwinAndC2D(t *testing.T) {
	f := newFixture(t)
	old, _ := f.h.Identity("dev1")
	if old.Generation == "" {
		t.Fatal("no generationId on a created device")
	}
	if _, err := f.h.UpdateTwin(f.ctx, "dev1", []byte(`{"tags":{"site":"a"},"properties":{"desired":{"rate":5}}}`), false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.h.PutModule(f.ctx, identity.JSON{DeviceID: "dev1", ModuleID: "m"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.h.UpdateTwin(f.ctx, "dev1/m", []byte(`{"properties":{"desired":{"x":1}}}`), false); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := f.h.SendC2D(f.ctx, "dev1", queue.Message{Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	code, _ := f.do(t, "DELETE", "/devices/dev1", ownerToken(), nil, nil)
	if code >= 300 {
		t.Fatalf("delete: %d", code)
	}
	for _, id := range []string{"dev1", "dev1/m"} {
		if _, err := f.h.twins().Get(id); !errors.Is(err, twin.ErrNotFound) {
			t.Fatalf("the twin of deleted %s: %v, want ErrNotFound", id, err)
		}
	}
	if q, ok := f.h.queues().Lookup("c2d/dev1"); ok && q.Stats().Depth != 0 {
		t.Fatalf("%d cloud-to-device messages left for the deleted device", q.Stats().Depth)
	}
	if f.h.metrics.twinsRemoved.Load() != 2 || f.h.metrics.c2dPurged.Load() != 3 {
		t.Fatalf("twins removed %d, c2d purged %d; want 2 and 3", f.h.metrics.twinsRemoved.Load(), f.h.metrics.c2dPurged.Load())
	}
	code, body := f.do(t, "PUT", "/devices/dev1", ownerToken(), []byte(`{"deviceId":"dev1","generationId":"mine","parentScopes":["`+f.gw.DeviceScope+`"]}`), nil)
	if code != 200 {
		t.Fatalf("create again: %d %s", code, body)
	}
	var j identity.JSON
	if err := json.Unmarshal(body, &j); err != nil || j.GenerationID == "" || j.GenerationID == old.Generation || j.GenerationID == "mine" {
		t.Fatalf("generationId of the device created again: %q (old %q), err %v", j.GenerationID, old.Generation, err)
	}
	doc, err := f.h.Twin("dev1")
	if err != nil || strings.Contains(string(doc), "rate") || strings.Contains(string(doc), "site") {
		t.Fatalf("the new device's twin: %s, %v", doc, err)
	}
	// An update keeps the generation.
	code, body = f.do(t, "PUT", "/devices/dev1", ownerToken(), []byte(`{"deviceId":"dev1","status":"disabled","parentScopes":["`+f.gw.DeviceScope+`"]}`), nil)
	var u identity.JSON
	if code != 200 || json.Unmarshal(body, &u) != nil || u.GenerationID != j.GenerationID {
		t.Fatalf("update: %d %s; generationId want %q", code, body, j.GenerationID)
	}
}

// Twin deltas and messages sent for an earlier generation of an identity
// are refused and counted, and acknowledged so that the edge moves on.
func TestOldGenerationRefused(t *testing.T) {
	f := newFixture(t)
	old, _ := f.h.Identity("dev1")
	if err := f.h.DeleteDevice(f.ctx, "dev1"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.h.PutDevice(f.ctx, identity.JSON{DeviceID: "dev1", ParentScopes: []string{f.gw.DeviceScope}}); err != nil {
		t.Fatal(err)
	}
	db, err := kv.Open("", kv.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ts, err := twin.Open(f.ctx, db, twin.Options{Role: twin.Edge, Name: "gw1"})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := ts.BeginSession()
	if _, err := ts.PatchReported(f.ctx, "dev1", s, []byte(`{"old":1}`)); err != nil {
		t.Fatal(err)
	}
	b, _, _ := ts.Delta(crdt.VV{}, 100)
	var ack protocol.TwinsAck
	up := protocol.TwinsUp{Instance: string(ts.Replica()), Batch: b, Generations: protocol.Generations{"dev1": old.Generation}}
	if code, body := f.frame(t, protocol.PathTwins, up, &ack); code != 200 {
		t.Fatalf("twins: %d %s", code, body)
	}
	if !ack.TwinVV.Covers(crdt.Dot{Origin: ts.Replica(), Seq: 1}) {
		t.Fatalf("the refused delta is not acknowledged: %v", ack.TwinVV)
	}
	if doc, _ := f.h.Twin("dev1"); strings.Contains(string(doc), "old") {
		t.Fatalf("an old generation's reported property reached the new twin: %s", doc)
	}
	msgs := protocol.Messages{Instance: string(ts.Replica()), Queue: "$upstream/pdefault", Msgs: []protocol.Message{
		{Seq: 1, ID: "a", Source: "devices/dev1", Sys: map[string]string{protocol.SysGeneration: old.Generation}, Body: []byte("old")},
		{Seq: 2, ID: "b", Source: "devices/dev1", Body: []byte("unstamped")},
	}}
	var mack protocol.MessagesAck
	if code, body := f.frame(t, protocol.PathMessages, msgs, &mack); code != 200 || mack.UpTo != 2 || mack.Appended != 1 || mack.Refused != 1 {
		t.Fatalf("messages: %d %s %+v; want both acknowledged, one appended", code, body, mack)
	}
	if f.h.metrics.twinsStale.Load() != 1 || f.h.metrics.eventsStale.Load() != 1 {
		t.Fatalf("refused twin deltas %d, events %d; want 1 and 1", f.h.metrics.twinsStale.Load(), f.h.metrics.eventsStale.Load())
	}
}

// A twin no edge holds loses its tombstones at once; one behind an edge
// keeps them until the edge's pull acknowledges them.
func TestGCWaitsForTheEdge(t *testing.T) {
	f := newFixture(t)
	for _, id := range []string{"other", "dev1"} {
		for _, p := range []string{`{"properties":{"desired":{"a":1}}}`, `{"properties":{"desired":{"a":null}}}`} {
			if _, err := f.h.UpdateTwin(f.ctx, id, []byte(p), false); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.h.collectGarbage(f.ctx)
	tombs := func(id string) int { n, _ := f.h.twins().Tombstones(id); return n }
	if tombs("other") != 0 || tombs("dev1") == 0 {
		t.Fatalf("tombstones: other %d (no edge: want 0), dev1 %d (edge not heard from: want some)", tombs("other"), tombs("dev1"))
	}
	pull := protocol.Pull{Instance: "edge:gw1.a1", TwinVV: f.h.twins().VV(), WaitMs: 10}
	if code, body := f.frame(t, protocol.PathPull, pull, &protocol.Push{}); code != 200 {
		t.Fatalf("pull: %d %s", code, body)
	}
	if tombs("dev1") != 0 || f.h.metrics.twinGC.Load() == 0 {
		t.Fatalf("dev1 keeps %d tombstones after the edge acknowledged them", tombs("dev1"))
	}
}
