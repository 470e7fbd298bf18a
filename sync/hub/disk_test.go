package hub

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/disk/disktest"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// Below its disk reserve the hub refuses message frames and image pushes
// with 507 and a {code,message} body; nothing is stored, so the edge keeps
// its backlog and sends it again.
func TestDiskBelowReserveRefusedWith507(t *testing.T) {
	mon := disktest.Low(t, t.TempDir())
	f := newFixtureWith(t, Options{PullWait: 200 * time.Millisecond, Disk: mon})
	batch := protocol.Messages{Instance: "edge:gw1.a1", Queue: "$upstream/pdefault", Msgs: []protocol.Message{
		{Seq: 1, ID: "m1", Source: "devices/dev1", Body: []byte("hello")}}}
	code, body := f.frame(t, protocol.PathMessages, batch, &protocol.MessagesAck{})
	var e protocol.APIError
	if code != 507 || json.Unmarshal(body, &e) != nil || e.Code != "InsufficientStorage" || e.Message == "" {
		t.Fatalf("messages below the reserve: %d %s; want 507 InsufficientStorage", code, body)
	}
	if f.h.LastSeq() != 0 {
		t.Fatalf("an event was stored: last seq %d", f.h.LastSeq())
	}
	if code, _ := pushImage(t, f, []byte("an image")); code != 507 {
		t.Fatalf("image push below the reserve: %d, want 507", code)
	}
	// Management (a device, a twin) still works inside the budget.
	if code, body := f.do(t, "PUT", "/devices/new1", ownerToken(), []byte(`{"deviceId":"new1"}`), nil); code != 200 {
		t.Fatalf("device create below the telemetry reserve: %d %s", code, body)
	}
}
