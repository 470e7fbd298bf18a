package hub

import (
	"bytes"
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/identity"
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
			t.Fatalf("the edge gw1 changed: %+v %v", d, err)
		}
	})
}

var fuzzTargets = [][2]string{
	{"PUT", "/devices/dev9"}, {"PUT", "/devices/gw1/modules/m9"}, {"PATCH", "/twins/gw1"}, {"PUT", "/twins/gw1/modules/$edgeHub"},
	{"POST", "/devices/gw1/applyConfigurationContent"}, {"POST", "/twins/gw1/methods"}, {"POST", "/devices/dev9/messages/deviceBound"},
}
