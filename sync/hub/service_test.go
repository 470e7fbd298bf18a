package hub

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/sync/protocol"
)

// TestTwinETag: a twin carries IoT Hub's etag and version; a write with
// If-Match of the current etag (quoted or not) or "*" applies, one made
// against an older version is refused with 412 and changes nothing.
func TestTwinETag(t *testing.T) {
	f := newFixture(t)
	get := func() map[string]any {
		t.Helper()
		code, body := f.do(t, "GET", "/twins/dev1", ownerToken(), nil, nil)
		if code != 200 {
			t.Fatalf("GET twin: %d %s", code, body)
		}
		var doc map[string]any
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatal(err)
		}
		return doc
	}
	first := get()
	for _, k := range []string{"deviceId", "etag", "deviceEtag", "version", "status", "connectionState", "lastActivityTime",
		"authenticationType", "capabilities", "cloudToDeviceMessageCount", "tags", "properties", "parentScopes"} {
		if _, ok := first[k]; !ok {
			t.Errorf("twin lacks %q: %v", k, first)
		}
	}
	if first["version"] != float64(1) || first["etag"] != twinETag(1) || first["connectionState"] != "Disconnected" {
		t.Fatalf("new twin: version %v etag %v state %v", first["version"], first["etag"], first["connectionState"])
	}
	patch := func(ifMatch string, tags string) (int, []byte) {
		return f.do(t, "PATCH", "/twins/dev1", ownerToken(), []byte(`{"tags":`+tags+`}`), map[string]string{"If-Match": ifMatch})
	}
	if code, body := patch(`"`+first["etag"].(string)+`"`, `{"env":"prod"}`); code != 200 {
		t.Fatalf("PATCH with the current etag, quoted: %d %s", code, body)
	}
	second := get()
	if second["version"] != float64(2) || second["etag"] == first["etag"] {
		t.Fatalf("after a write: version %v etag %v", second["version"], second["etag"])
	}
	code, body := patch(first["etag"].(string), `{"env":"stale"}`)
	if code != 412 {
		t.Fatalf("PATCH with a stale etag: %d %s, want 412", code, body)
	}
	if env := get()["tags"].(map[string]any)["env"]; env != "prod" {
		t.Fatalf("a refused write changed the twin: env %v", env)
	}
	if code, body := patch(second["etag"].(string), `{"env":"dev"}`); code != 200 {
		t.Fatalf("PATCH with the current etag, bare: %d %s", code, body)
	}
	if code, body := patch("*", `{"env":"any"}`); code != 200 {
		t.Fatalf("PATCH with *: %d %s", code, body)
	}
	if code, _ := patch(`"not-an-etag"`, `{"env":"x"}`); code != 412 {
		t.Fatalf("PATCH with a malformed etag: %d, want 412", code)
	}
	if v := get()["version"]; v != float64(4) {
		t.Fatalf("version after three writes: %v, want 4", v)
	}
}

// TestDeviceETagAndList: the service SDKs list with a trailing slash, and
// an identity's etag guards its update.
func TestDeviceETagAndList(t *testing.T) {
	f := newFixture(t)
	for _, p := range []string{"/devices", "/devices/"} {
		code, body := f.do(t, "GET", p, ownerToken(), nil, nil)
		var list []DeviceJSON
		if code != 200 || json.Unmarshal(body, &list) != nil || len(list) != 3 {
			t.Fatalf("GET %s: %d %s", p, code, body)
		}
		for _, d := range list {
			if d.ETag == "" || d.ConnectionState != "Disconnected" || d.LastActivityTime != neverTime {
				t.Fatalf("GET %s: %+v", p, d)
			}
		}
	}
	code, body := f.do(t, "GET", "/devices/other", ownerToken(), nil, nil)
	var d DeviceJSON
	if code != 200 || json.Unmarshal(body, &d) != nil {
		t.Fatalf("GET device: %d %s", code, body)
	}
	put := func(ifMatch, status string) (int, []byte) {
		return f.do(t, "PUT", "/devices/other", ownerToken(), []byte(`{"deviceId":"other","status":"`+status+`"}`), map[string]string{"If-Match": ifMatch})
	}
	if code, body := put(`"`+d.ETag+`"`, "disabled"); code != 200 {
		t.Fatalf("PUT with the current etag: %d %s", code, body)
	}
	if code, body := put(`"`+d.ETag+`"`, "enabled"); code != 412 {
		t.Fatalf("PUT with a stale etag: %d %s, want 412", code, body)
	}
	if code, body := put("*", "enabled"); code != 200 {
		t.Fatalf("PUT with *: %d %s", code, body)
	}
	code, body = f.do(t, "PUT", "/devices/newone", ownerToken(), []byte(`{"deviceId":"newone"}`), map[string]string{"If-Match": `"abc"`})
	if code != 412 {
		t.Fatalf("PUT of a new device with an etag: %d %s, want 412", code, body)
	}
	code, body = f.do(t, "GET", "/statistics/devices", ownerToken(), nil, nil)
	var st map[string]int
	if code != 200 || json.Unmarshal(body, &st) != nil || st["totalDeviceCount"] != 3 || st["enabledDeviceCount"] != 3 || st["disabledDeviceCount"] != 0 {
		t.Fatalf("statistics: %d %s", code, body)
	}
}

// TestPresence: what an edge reports with its pulls is each identity's
// connectionState and lastActivityTime; a full report disconnects the
// identities of its scope it does not list; identities outside its scope
// are not its to report.
func TestPresence(t *testing.T) {
	f := newFixture(t)
	state := func(id string) (string, string) {
		t.Helper()
		doc, err := f.h.TwinDoc(id)
		if err != nil {
			t.Fatal(err)
		}
		return doc["connectionState"].(string), doc["lastActivityTime"].(string)
	}
	connected := func() int {
		t.Helper()
		_, body := f.do(t, "GET", "/statistics/service", ownerToken(), nil, nil)
		var st map[string]int
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		return st["connectedDeviceCount"]
	}
	const at = 1767225600000 // 2026-01-01T00:00:00Z
	pull := func(full bool, ps ...protocol.Presence) {
		t.Helper()
		if err := f.h.notePresence(f.ctx, "gw1", protocol.Pull{Instance: "edge:gw1.a1", PresenceFull: full, Presence: ps}); err != nil {
			t.Fatal(err)
		}
	}
	pull(true, protocol.Presence{ID: "dev1", Connected: true, Since: at, Activity: at + 60_000},
		protocol.Presence{ID: "other", Connected: true, Since: at})
	if s, a := state("dev1"); s != "Connected" || a != "2026-01-01T00:01:00.000Z" {
		t.Fatalf("dev1 after a full report: %s %s", s, a)
	}
	if s, _ := state("other"); s != "Disconnected" {
		t.Fatalf("an edge reported a device outside its scope: %s", s)
	}
	if n := connected(); n != 1 {
		t.Fatalf("connectedDeviceCount %d, want 1", n)
	}
	pull(false, protocol.Presence{ID: "dev1", Since: at + 120_000})
	if s, a := state("dev1"); s != "Disconnected" || a != "2026-01-01T00:01:00.000Z" {
		t.Fatalf("dev1 after a disconnect: %s %s (activity kept)", s, a)
	}
	pull(false, protocol.Presence{ID: "gw1/$edgeHub", Connected: true, Since: at})
	pull(true)
	if s, _ := state("gw1/$edgeHub"); s != "Disconnected" {
		t.Fatalf("a full report without a module left it %s", s)
	}
	if n := connected(); n != 0 {
		t.Fatalf("connectedDeviceCount %d, want 0", n)
	}
	code, body := f.do(t, "GET", "/devices/dev1", ownerToken(), nil, nil)
	var d DeviceJSON
	if code != 200 || json.Unmarshal(body, &d) != nil || d.ConnectionStateUpdatedTime != "2026-01-01T00:02:00.000Z" {
		t.Fatalf("device: %d %s", code, body)
	}
}

// TestBulkDevices: POST /devices creates, updates and deletes up to 100
// devices, each on its own; what fails is listed with its reason and the
// answer is 400, the others are written.
func TestBulkDevices(t *testing.T) {
	f := newFixture(t)
	post := func(body string) (int, BulkResult) {
		t.Helper()
		code, out := f.do(t, "POST", "/devices", ownerToken(), []byte(body), nil)
		var r BulkResult
		if err := json.Unmarshal(out, &r); err != nil && code < 300 {
			t.Fatalf("bulk answer %d %s", code, out)
		}
		return code, r
	}
	code, r := post(`[{"id":"b1","importMode":"create","authentication":{"type":"sas","symmetricKey":{"primaryKey":"","secondaryKey":""}}},
		{"id":"b2","importMode":"create"},{"id":"other","importMode":"create"}]`)
	if code != 400 || r.IsSuccessful || len(r.Errors) != 1 || r.Errors[0].DeviceID != "other" || r.Errors[0].ErrorCode != "DeviceAlreadyExists" {
		t.Fatalf("create with one existing: %d %+v", code, r)
	}
	b1, err := f.h.Identity("b1")
	if err != nil || len(b1.Auth.PrimaryKey) == 0 {
		t.Fatalf("b1 not created with generated keys: %+v %v", b1, err)
	}
	etag := identityETag(b1)
	code, r = post(`[{"id":"b1","importMode":"updateIfMatchETag","eTag":"` + etag + `","status":"disabled"},{"id":"b2","importMode":"Update","status":"disabled"}]`)
	if code != 200 || !r.IsSuccessful {
		t.Fatalf("update: %d %+v", code, r)
	}
	code, r = post(`[{"id":"b1","importMode":"UpdateIfMatchETag","eTag":"` + etag + `","status":"enabled"}]`)
	if code != 400 || r.Errors[0].ErrorCode != "PreconditionFailed" {
		t.Fatalf("update with a stale etag: %d %+v", code, r)
	}
	if id, _ := f.h.Identity("b1"); id.Status != "disabled" {
		t.Fatalf("b1 %s after a refused update", id.Status)
	}
	code, r = post(`[{"id":"b1","importMode":"delete"},{"id":"b2","importMode":"Delete"},{"id":"nope","importMode":"delete"},{"id":"b3","importMode":"upsert"}]`)
	if code != 400 || len(r.Errors) != 2 {
		t.Fatalf("delete: %d %+v", code, r)
	}
	for _, id := range []string{"b1", "b2"} {
		if _, err := f.h.Identity(id); err == nil {
			t.Fatalf("%s not deleted", id)
		}
	}
	if code, _ := f.do(t, "POST", "/devices", ownerToken(), []byte(`{"id":"x"}`), nil); code != 400 {
		t.Fatalf("an object instead of an array: %d", code)
	}
}

// TestErrorEnvelope: an error answer carries {code, message} and the form
// the Azure IoT service SDKs parse ("Message":"ErrorCode:<code>;<text>"),
// and Outpost's own reader still takes the plain message.
func TestErrorEnvelope(t *testing.T) {
	f := newFixture(t)
	code, body := f.do(t, "GET", "/devices/nope", ownerToken(), nil, nil)
	var raw map[string]string
	if code != 404 || json.Unmarshal(body, &raw) != nil {
		t.Fatalf("%d %s", code, body)
	}
	if raw["code"] != "NotFound" || !strings.HasPrefix(raw["Message"], "ErrorCode:NotFound;") || strings.HasPrefix(raw["message"], "ErrorCode") {
		t.Fatalf("envelope %s", body)
	}
	if e := protocol.ReadError(code, body); e.Code != "NotFound" || e.Message != raw["message"] {
		t.Fatalf("ReadError: %+v", e)
	}
}

// TestServiceEndpointsNeedOwner: the back-end endpoints (bulk, queries,
// statistics, deployments, jobs) answer only the owner's token; an edge's
// token, which opens the link, opens none of them.
func TestServiceEndpointsNeedOwner(t *testing.T) {
	f := newFixture(t)
	for _, ep := range [][2]string{
		{"POST", "/devices"}, {"GET", "/devices/"}, {"POST", "/devices/query"}, {"POST", "/devices/modules/query"},
		{"GET", "/statistics/devices"}, {"GET", "/statistics/service"},
		{"PUT", "/configurations/c1"}, {"GET", "/configurations"}, {"GET", "/configurations/c1"}, {"DELETE", "/configurations/c1"},
		{"PUT", "/jobs/v2/j1"}, {"GET", "/jobs/v2/j1"}, {"POST", "/jobs/v2/j1/cancel"}, {"GET", "/jobs/v2/query"},
	} {
		for name, tok := range map[string]string{"none": "", "edge": f.edgeToken()} {
			if code, body := f.do(t, ep[0], ep[1], tok, []byte(`{}`), nil); code != 401 {
				t.Errorf("%s %s with %s token: %d %s, want 401", ep[0], ep[1], name, code, body)
			}
		}
	}
}
