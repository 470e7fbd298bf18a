package upstream

import (
	"slices"
	"testing"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// The hub deletes a device: the edge drops its identity, twin and queues,
// and counts it.
func TestDeletedDeviceRemovedAtEdge(t *testing.T) {
	e := newEnv(t)
	eventually(t, "the twin of dev1", func() bool { _, err := e.twins.Get("dev1"); return err == nil })
	if _, err := e.hub.SendC2D(e.ctx, "dev1", queue.Message{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the C2D cursor", func() bool { _, c, _ := e.link.loadC2D(); return c["dev1"] > 0 })
	if err := e.hub.DeleteDevice(e.ctx, "dev1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the twin removed at the edge", func() bool { _, err := e.twins.Get("dev1"); return err != nil })
	if _, ok, _ := e.ids.Get("dev1"); ok {
		t.Fatal("the identity is still cached")
	}
	e.rec.mu.Lock()
	purged := slices.Contains(e.rec.purged, "dev1")
	e.rec.mu.Unlock()
	if st := e.link.Status(); st.TwinsRemoved != 1 || !purged {
		t.Fatalf("twins removed %d, queues purged %v", st.TwinsRemoved, purged)
	}
	if _, c, _ := e.link.loadC2D(); c["dev1"] != 0 {
		t.Fatalf("the C2D cursor of the deleted device is kept: %v", c)
	}
}

// An edge offline while its device is deleted and created again still
// holds the old twin and writes to it; once back, the old reported values
// do not reach the new device's twin, and the edge ends with the new one.
func TestRecreatedDeviceStartsFresh(t *testing.T) {
	e := newEnv(t)
	eventually(t, "the twin of dev1", func() bool { _, err := e.twins.Get("dev1"); return err == nil })
	session, _ := e.twins.BeginSession()
	if _, err := e.twins.PatchReported(e.ctx, "dev1", session, []byte(`{"old":1}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "reported at the hub", func() bool { doc, _ := e.hub.Twin("dev1"); return contains(doc, `"old":1`) })
	old, _ := e.hub.Identity("dev1")

	e.cut.Store(true)
	e.srv.CloseClientConnections() // ends the pull the hub holds
	gw, _ := e.hub.Identity("gw1")
	if err := e.hub.DeleteDevice(e.ctx, "dev1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.hub.PutDevice(e.ctx, identity.JSON{DeviceID: "dev1", ParentScopes: []string{gw.DeviceScope}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.twins.PatchReported(e.ctx, "dev1", session, []byte(`{"offline":2}`)); err != nil {
		t.Fatal(err)
	}
	e.cut.Store(false)

	fresh, _ := e.hub.Identity("dev1")
	eventually(t, "the new generation at the edge", func() bool { g, _ := e.twins.Generation("dev1"); return g == fresh.Generation })
	if fresh.Generation == old.Generation {
		t.Fatal("the device created again kept its generationId")
	}
	if _, err := e.hub.UpdateTwin(e.ctx, "dev1", []byte(`{"properties":{"desired":{"fresh":true}}}`), false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new twin at the edge", func() bool { v, err := e.twins.Get("dev1"); return err == nil && v.Desired["fresh"] == true })
	v, _ := e.twins.Get("dev1")
	if len(v.Reported) != 0 {
		t.Fatalf("the edge's twin of the new device shows old reported properties: %v", v.Reported)
	}
	doc, _ := e.hub.Twin("dev1")
	if contains(doc, `"old"`) || contains(doc, `"offline"`) {
		t.Fatalf("old reported properties reached the new device's twin at the hub: %s", doc)
	}
	if st := e.link.Status(); st.TwinsReset != 1 {
		t.Fatalf("twins reset %d, want 1", st.TwinsReset)
	}
}

// An identity the edge refuses (an id with an MQTT wildcard, which an
// older hub allowed) is skipped; the rest of the scope is applied.
func TestWildcardIdentitySkipped(t *testing.T) {
	e := newEnv(t)
	eventually(t, "the twin of dev1", func() bool { _, err := e.twins.Get("dev1"); return err == nil })
	ids, _ := e.ids.List()
	dev1, _, _ := e.ids.Get("dev1")
	bad := dev1
	bad.DeviceID = "a+b"
	newer := dev1
	newer.DeviceID = "dev9"
	push := protocol.Push{HasScope: true, Identities: protocol.IdentitiesFromStore(append(slices.Clone(ids), bad, newer))}
	if err := e.link.apply(e.ctx, push, map[string]uint64{}); err != nil {
		t.Fatalf("one bad identity stopped the pull: %v", err)
	}
	if _, ok, _ := e.ids.Get("dev9"); !ok {
		t.Error("the good identities of the same pull were not applied")
	}
	all, _ := e.ids.List()
	for _, i := range all {
		if i.DeviceID == "a+b" {
			t.Error("the wildcard identity was cached")
		}
	}
}
