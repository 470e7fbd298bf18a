package hub

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// FuzzServiceAPI: whatever body a REST request carries, the hub answers
// with a client error or success — never a server error, never a panic —
// and the registry keeps the edge it had.
func FuzzServiceAPI(f *testing.F) {
	for _, s := range []string{
		`{"deviceId":"x","capabilities":{"iotEdge":true}}`,
		`{"properties":{"desired":{"a":{"b":[1,2]}}},"tags":{"t":null}}`,
		`{"modulesContent":{"$edgeAgent":{"properties.desired":{"modules":{"m":{}}}}}}`,
		`{"methodName":"m","payload":{"x":1},"responseTimeoutInSeconds":1}`,
		`{"deviceId":"x","parentScopes":["ms-azure-iot-edge://gw1-1"]}`, `{"deviceId":"dev9","generationId":"1 2"}`, `null`, `[]`, `{`,
		`[{"id":"b1","importMode":"create"},{"id":"b1","importMode":"delete"},{"id":"b2","importMode":"updateIfMatchETag","eTag":"x"}]`,
		`{"query":"SELECT tags.env, COUNT() AS n FROM devices WHERE IS_DEFINED(tags.env) GROUP BY tags.env"}`,
		`{"query":"SELECT * FROM devices.jobs WHERE jobId = 'j9'"}`,
		`{"id":"c9","targetCondition":"tags.env='prod'","priority":3,"content":{"modulesContent":{"$edgeHub":{"properties.desired.routes.r":"FROM /messages/* INTO $upstream"}}},"metrics":{"queries":{"m":"SELECT deviceId FROM devices"}}}`,
		`{"jobId":"j9","type":"scheduleUpdateTwin","queryCondition":"deviceId IN ['dev9']","updateTwin":{"tags":{"a":1}},"startTime":null}`,
		`{"jobId":"j9","type":"scheduleDeviceMethod","queryCondition":"*","cloudToDeviceMethod":{"methodName":"m","responseTimeoutInSeconds":1}}`,
	} {
		for i := range uint8(len(fuzzTargets)) {
			f.Add(i, []byte(s))
		}
	}
	ctx := context.Background()
	h, err := Open(ctx, "", Options{HostName: "hub.test", OwnerKey: ownerKey, InMemory: true, PullWait: 10 * time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = h.Close() })
	if _, err := h.PutDevice(ctx, identity.JSON{DeviceID: "gw1", Capabilities: &identity.Capabilities{IoTEdge: true}}); err != nil {
		f.Fatal(err)
	}
	handler := h.Handler()
	f.Fuzz(func(t *testing.T, target uint8, body []byte) {
		tg := fuzzTargets[int(target)%len(fuzzTargets)]
		req := httptest.NewRequest(tg[0], tg[1], bytes.NewReader(body))
		req.Header.Set("Authorization", ownerToken())
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s with %q: %d %s", tg[0], tg[1], body, rec.Code, rec.Body.Bytes())
		}
		if d, err := h.Identity("gw1"); err != nil || !d.Edge {
			if tg[1] != "/devices" { // a bulk request may delete or change it, as it asks
				t.Fatalf("the edge gw1 changed: %+v %v", d, err)
			}
			if _, err := h.PutDevice(ctx, identity.JSON{DeviceID: "gw1", Capabilities: &identity.Capabilities{IoTEdge: true}}); err != nil {
				t.Fatal(err)
			}
		}
	})
}

var fuzzTargets = [][2]string{
	{"PUT", "/devices/dev9"}, {"PUT", "/devices/gw1/modules/m9"}, {"PATCH", "/twins/gw1"}, {"PUT", "/twins/gw1/modules/$edgeHub"},
	{"POST", "/devices/gw1/applyConfigurationContent"}, {"POST", "/twins/gw1/methods"}, {"POST", "/devices/dev9/messages/deviceBound"},
	{"POST", "/devices"}, {"POST", "/devices/query"}, {"PUT", "/configurations/c9"}, {"PUT", "/jobs/v2/j9"},
}

// FuzzMessages: whatever batch an edge sends (message ids reused, bodies
// alike or not, sequence numbers anywhere), the hub answers a client error
// or an ack, the same batch sent again stores nothing more, and no message
// it acknowledged as new is missing from the log.
func FuzzMessages(f *testing.F) {
	seed := func(m protocol.Messages) {
		data, _, _ := protocol.Encode(m)
		f.Add(data)
	}
	seed(msgs(1, 5, bodyOf("a")))
	seed(msgs(3, 9, func(uint64) string { return "same body" }))
	seed(protocol.Messages{Instance: "edge:gw1.a1", Queue: "q", Msgs: []protocol.Message{
		{Seq: 1, ID: "1", Source: "devices/dev1", Body: []byte("x")}, {Seq: 2, ID: "1", Source: "devices/other"}, {Seq: 2, ID: "1", Source: "devices/dev1"}}})
	seed(protocol.Messages{Instance: "edge:gw1.a1", Queue: "q", Msgs: []protocol.Message{{Seq: 1 << 63, Source: "devices/dev1/modules/m"}}})
	ctx := context.Background()
	h, err := Open(ctx, "", Options{HostName: "hub.test", OwnerKey: ownerKey, InMemory: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = h.Close() })
	gw, err := h.PutDevice(ctx, identity.JSON{DeviceID: "gw1", Capabilities: &identity.Capabilities{IoTEdge: true}})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := h.PutDevice(ctx, identity.JSON{DeviceID: "dev1", ParentScopes: []string{gw.DeviceScope}}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m protocol.Messages
		if protocol.DecodeBytes(data, &m) != nil {
			return
		}
		before := h.LastSeq()
		ack, err := h.Messages(ctx, "gw1", m)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("batch %+v: %v", m, err)
			}
			return
		}
		if got := h.LastSeq() - before; got != uint64(ack.Appended) {
			t.Fatalf("ack says %d appended, the log grew by %d", ack.Appended, got)
		}
		again, err := h.Messages(ctx, "gw1", m)
		if err != nil || again.Appended != 0 || again.Collisions != 0 {
			t.Fatalf("the same batch again: %+v %v", again, err)
		}
	})
}
