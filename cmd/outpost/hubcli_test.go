package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
	"github.com/outpost-edge/outpost/store/identity/sas"
)

// The hub commands against a fake hub: what they send and what they print.
// Scenarios against a real hub live in testdata/script.

const fakeHubHost = "hub.test:8080"

var fakeOwnerKey = []byte("owner-key-owner-key-owner-key-32")

// fakeHub answers "METHOD /path" with canned responses and records every
// request. Requests without a valid owner token get a 401.
type fakeHub struct {
	t       *testing.T
	srv     *httptest.Server
	answers map[string]answer
	custom  http.HandlerFunc // answers instead of answers when set
	mu      sync.Mutex
	reqs    []seen
}

type answer struct {
	status int
	body   string
}

type seen struct {
	method, path string
	header       http.Header
	body         string
}

func newFakeHub(t *testing.T, answers map[string]answer) *fakeHub {
	return startFakeHub(&fakeHub{t: t, answers: answers})
}

func startFakeHub(h *fakeHub) *fakeHub {
	h.srv = httptest.NewServer(h)
	t := h.t
	t.Cleanup(h.srv.Close)
	return h
}

func (h *fakeHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok, err := sas.ParseToken(r.Header.Get("Authorization"))
	if err == nil {
		err = sas.Verify(tok, fakeHubHost, [][]byte{fakeOwnerKey}, time.Now(), 0)
	}
	if err != nil || r.URL.Query().Get("api-version") == "" {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"code":"Unauthorized","message":%q}`, fmt.Sprint(err))
		return
	}
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.reqs = append(h.reqs, seen{r.Method, r.URL.EscapedPath(), r.Header, string(body)})
	h.mu.Unlock()
	if h.custom != nil {
		h.custom(w, r)
		return
	}
	a, ok := h.answers[r.Method+" "+r.URL.EscapedPath()]
	if !ok {
		a = answer{404, `{"code":"NotFound","message":"no such thing"}`}
	}
	if a.status == 0 {
		a.status = 200
	}
	w.WriteHeader(a.status)
	io.WriteString(w, a.body)
}

// request returns the one request made with method and path.
func (h *fakeHub) request(method, path string) seen {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	var found []seen
	for _, r := range h.reqs {
		if r.method == method && r.path == path {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		h.t.Fatalf("%d requests %s %s, want 1; all: %v", len(found), method, path, h.reqs)
	}
	return found[0]
}

func (h *fakeHub) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reqs = nil
}

func (h *fakeHub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.reqs)
}

// outpost runs the CLI against the fake hub (nil: no environment at all).
func outpost(h *fakeHub, args ...string) (code int, stdout, stderr string) {
	env := map[string]string{}
	if h != nil {
		env["OUTPOST_HUB_CONNECTION_STRING"] = "HostName=" + fakeHubHost + ";SharedAccessKeyName=owner;SharedAccessKey=" + base64.StdEncoding.EncodeToString(fakeOwnerKey)
		env["OUTPOST_HUB_URL"] = h.srv.URL
	}
	var out, errb bytes.Buffer
	code = cli.Main(args, commands, cli.Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }})
	return code, out.String(), errb.String()
}

func mustRun(t *testing.T, h *fakeHub, args ...string) string {
	t.Helper()
	code, out, errs := outpost(h, args...)
	if code != 0 {
		t.Fatalf("outpost %s: exit %d\n%s", strings.Join(args, " "), code, errs)
	}
	return out
}

func compact(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
	return b.String()
}

const (
	gw1JSON     = `{"deviceId":"gw1","status":"enabled","capabilities":{"iotEdge":true},"deviceScope":"ms-azure-iot-edge://gw1-42","authentication":{"type":"sas","symmetricKey":{"primaryKey":"cGdr","secondaryKey":"c2Vj"}}}`
	sensor1JSON = `{"deviceId":"sensor1","status":"enabled","capabilities":{"iotEdge":false},"parentScopes":["ms-azure-iot-edge://gw1-42"],"authentication":{"type":"sas","symmetricKey":{"primaryKey":"cGsx","secondaryKey":"c2sx"}}}`
)

func TestHubCLIDeviceCreateWithParent(t *testing.T) {
	h := newFakeHub(t, map[string]answer{
		"GET /devices/gw1":     {body: gw1JSON},
		"PUT /devices/sensor1": {body: sensor1JSON},
	})
	// Flags after the positional arguments, as CONTRACT §6 shows.
	out := mustRun(t, h, "device", "create", "sensor1", "--parent", "gw1")
	put := h.request("PUT", "/devices/sensor1")
	want := `{"deviceId":"sensor1","status":"enabled","capabilities":{"iotEdge":false},"parentScopes":["ms-azure-iot-edge://gw1-42"]}`
	if compact(t, put.body) != want {
		t.Errorf("PUT body %s\nwant %s", put.body, want)
	}
	h.request("GET", "/devices/sensor1") // it checked the device does not exist yet
	wantOut := strings.TrimSuffix(sensor1JSON, "}") + `,"connectionString":"HostName=hub.test:8080;DeviceId=sensor1;SharedAccessKey=cGsx"}`
	if compact(t, out) != wantOut {
		t.Errorf("printed %s\nwant %s", out, wantOut)
	}
	if !strings.HasPrefix(out, "{\n  \"deviceId\": \"sensor1\",\n") || strings.Contains(out, "GatewayHostName") {
		t.Errorf("want pretty JSON with fields as received and no GatewayHostName:\n%s", out)
	}
}

func TestHubCLIDeviceCreate(t *testing.T) {
	h := newFakeHub(t, map[string]answer{
		"PUT /devices/gw1":     {body: gw1JSON},
		"GET /devices/sensor1": {body: sensor1JSON},
	})
	out := mustRun(t, h, "device", "create", "--edge", "gw1")
	if got := compact(t, h.request("PUT", "/devices/gw1").body); got != `{"deviceId":"gw1","status":"enabled","capabilities":{"iotEdge":true}}` {
		t.Errorf("PUT body %s", got)
	}
	if !strings.Contains(out, `"connectionString": "HostName=hub.test:8080;DeviceId=gw1;SharedAccessKey=cGdr"`) {
		t.Errorf("printed %s", out)
	}
	h.reset()

	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	mustRun(t, h, "device", "create", "gw1", "--edge", "--primary-key", key)
	if got := compact(t, h.request("PUT", "/devices/gw1").body); !strings.HasSuffix(got, `"authentication":{"type":"sas","symmetricKey":{"primaryKey":"`+key+`"}}}`) {
		t.Errorf("PUT body with --primary-key: %s", got)
	}
	if code, _, errs := outpost(h, "device", "create", "z", "--primary-key", "short"); code != 2 || !strings.Contains(errs, "--primary-key must be base64 of 16 to 64 bytes") {
		t.Errorf("bad key: exit %d, %s", code, errs)
	}

	code, _, errs := outpost(h, "device", "create", "x", "--parent", "sensor1")
	if code != 1 || !strings.Contains(errs, `error: parent device "sensor1" is not an edge device`) {
		t.Errorf("parent not an edge: exit %d, %s", code, errs)
	}
	code, _, errs = outpost(h, "device", "create", "y", "--parent", "nope")
	if code != 1 || !strings.Contains(errs, `error: parent device "nope": hub: 404 NotFound: no such thing`) {
		t.Errorf("parent missing: exit %d, %s", code, errs)
	}
	code, _, errs = outpost(h, "device", "create", "sensor1")
	if code != 1 || !strings.Contains(errs, `error: device "sensor1" already exists`) {
		t.Errorf("existing device: exit %d, %s", code, errs)
	}
}

func TestHubCLIDeviceListShowDelete(t *testing.T) {
	h := newFakeHub(t, map[string]answer{
		"GET /devices":        {body: "[" + gw1JSON + "," + sensor1JSON + "]"},
		"GET /devices/gw1":    {body: gw1JSON},
		"DELETE /devices/gw1": {status: 204},
	})
	out := mustRun(t, h, "device", "list", "-o", "table")
	want := regexp.MustCompile(`(?m)^DEVICE ID +STATUS +EDGE +PARENT SCOPE +AUTH\ngw1 +enabled +true +- +sas\nsensor1 +enabled +false +ms-azure-iot-edge://gw1-42 +sas\n$`)
	if !want.MatchString(out) {
		t.Errorf("table:\n%s", out)
	}
	if out := mustRun(t, h, "device", "list"); compact(t, out) != "["+gw1JSON+","+sensor1JSON+"]" {
		t.Errorf("list JSON %s", out)
	}
	if out := mustRun(t, h, "device", "show", "gw1"); !strings.Contains(out, `"connectionString"`) {
		t.Errorf("show %s", out)
	}
	if out := mustRun(t, h, "device", "delete", "gw1"); out != "" {
		t.Errorf("delete printed %q", out)
	}
}

func TestHubCLIModule(t *testing.T) {
	h := newFakeHub(t, map[string]answer{
		"PUT /devices/gw1/modules/filter": {body: `{"deviceId":"gw1","moduleId":"filter","authentication":{"type":"sas","symmetricKey":{"primaryKey":"bWsx","secondaryKey":"bWsy"}}}`},
		"GET /devices/gw1/modules":        {body: `[{"deviceId":"gw1","moduleId":"$edgeAgent"},{"deviceId":"gw1","moduleId":"filter","status":"enabled"}]`},
	})
	out := mustRun(t, h, "module", "create", "gw1", "filter")
	if got := compact(t, h.request("PUT", "/devices/gw1/modules/filter").body); got != `{"deviceId":"gw1","moduleId":"filter"}` {
		t.Errorf("PUT body %s", got)
	}
	if !strings.Contains(out, `"connectionString": "HostName=hub.test:8080;DeviceId=gw1;ModuleId=filter;SharedAccessKey=bWsx"`) {
		t.Errorf("printed %s", out)
	}
	out = mustRun(t, h, "module", "list", "gw1", "-o", "table")
	if !regexp.MustCompile(`^MODULE ID +STATUS\n\$edgeAgent +-\nfilter +enabled\n$`).MatchString(out) {
		t.Errorf("table:\n%s", out)
	}
}

func TestHubCLITwin(t *testing.T) {
	twin := `{"deviceId":"sensor1","tags":{},"properties":{"desired":{"interval":10,"$version":2},"reported":{"$version":1}}}`
	h := newFakeHub(t, map[string]answer{
		"PATCH /twins/sensor1":            {body: twin},
		"GET /twins/gw1/modules/$edgeHub": {body: `{"deviceId":"gw1","moduleId":"$edgeHub"}`},
		"PUT /twins/sensor1":              {body: twin},
	})
	patch := `{"properties":{"desired":{"interval":10}}}`
	out := mustRun(t, h, "twin", "patch", "sensor1", patch)
	if got := h.request("PATCH", "/twins/sensor1"); got.body != patch || got.header.Get("Content-Type") != "application/json" {
		t.Errorf("PATCH body %s (%s)", got.body, got.header.Get("Content-Type"))
	}
	if out != "{\n  \"deviceId\": \"sensor1\",\n  \"tags\": {},\n  \"properties\": {\n    \"desired\": {\n      \"interval\": 10,\n      \"$version\": 2\n    },\n    \"reported\": {\n      \"$version\": 1\n    }\n  }\n}\n" {
		t.Errorf("printed:\n%s", out)
	}
	mustRun(t, h, "twin", "show", "gw1/$edgeHub")
	mustRun(t, h, "twin", "replace", "sensor1", `{"tags":{"a":1}}`)
	if got := h.request("PUT", "/twins/sensor1").body; got != `{"tags":{"a":1}}` {
		t.Errorf("PUT body %s", got)
	}

	n := h.count()
	for _, bad := range []struct{ arg, msg string }{
		{`{"properties":`, "error: the twin patch is not valid JSON (unexpected end of JSON input)"},
		{`interval=10`, "error: the twin patch is not valid JSON (invalid character 'i'"},
		{`[1,2]`, "error: the twin patch must be a JSON object {…}, got [1,2]"},
	} {
		code, _, errs := outpost(h, "twin", "patch", "sensor1", bad.arg)
		if code != 1 || !strings.HasPrefix(errs, bad.msg) || strings.Count(errs, "\n") != 1 {
			t.Errorf("twin patch %s: exit %d, stderr %q; want exit 1 and %q", bad.arg, code, errs, bad.msg)
		}
	}
	if h.count() != n {
		t.Errorf("a bad patch reached the hub")
	}
}

func TestHubCLIDeploy(t *testing.T) {
	h := newFakeHub(t, map[string]answer{"POST /devices/gw1/applyConfigurationContent": {body: ""}})
	mc := `{"$edgeAgent":{"properties.desired":{"modules":{}}},"$edgeHub":{"properties.desired":{"routes":{"up":"FROM /messages/* INTO $upstream"}}}}`
	dir := t.TempDir()
	for name, manifest := range map[string]string{
		"plain": `{"modulesContent":` + mc + `}`,
		"az":    `{"id":"d1","content":{"modulesContent":` + mc + `},"targetCondition":"*"}`,
	} {
		file := filepath.Join(dir, name+".json")
		if err := os.WriteFile(file, []byte(manifest), 0o600); err != nil {
			t.Fatal(err)
		}
		h.reset()
		if out := mustRun(t, h, "deploy", "gw1", file); out != "" {
			t.Errorf("%s: printed %q for an empty answer", name, out)
		}
		if got := compact(t, h.request("POST", "/devices/gw1/applyConfigurationContent").body); got != `{"modulesContent":`+mc+`}` {
			t.Errorf("%s: POST body %s", name, got)
		}
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"modules":{}}`), 0o600)
	code, _, errs := outpost(h, "deploy", "gw1", bad)
	if code != 1 || !strings.Contains(errs, `has no "modulesContent"`) {
		t.Errorf("bad manifest: exit %d, %s", code, errs)
	}
}

func TestHubCLIC2D(t *testing.T) {
	h := newFakeHub(t, map[string]answer{"POST /devices/sensor1/messages/deviceBound": {status: 204}})
	out := mustRun(t, h, "c2d", "send", "sensor1", `{"cmd":"reboot"}`, "--prop", "origin=cli", "--prop", "Level=high")
	req := h.request("POST", "/devices/sensor1/messages/deviceBound")
	if req.body != `{"cmd":"reboot"}` || req.header.Get("Content-Type") != "application/octet-stream" ||
		req.header.Get("iothub-app-origin") != "cli" || req.header.Get("iothub-app-Level") != "high" {
		t.Errorf("sent %q with %v", req.body, req.header)
	}
	id := req.header.Get("iothub-messageid")
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) || out != "{\n  \"messageId\": \""+id+"\"\n}\n" {
		t.Errorf("message id %q, printed %q", id, out)
	}

	h.reset()
	out = mustRun(t, h, "c2d", "send", "--message-id", "m-7", "sensor1", "hi")
	if got := h.request("POST", "/devices/sensor1/messages/deviceBound").header.Get("iothub-messageid"); got != "m-7" || !strings.Contains(out, `"m-7"`) {
		t.Errorf("message id %q, printed %q", got, out)
	}
	if code, _, errs := outpost(h, "c2d", "send", "sensor1", "hi", "--prop", "novalue"); code != 2 || !strings.Contains(errs, "want k=v") {
		t.Errorf("--prop novalue: exit %d, %s", code, errs)
	}
}

func TestHubCLIMethod(t *testing.T) {
	h := newFakeHub(t, map[string]answer{
		"POST /twins/gw1/modules/filter/methods": {body: `{"status":200,"payload":{"done":true}}`},
		"POST /twins/offline/methods":            {status: 404, body: `{"code":"DeviceNotOnline","message":"device \"offline\" is not connected"}`},
	})
	out := mustRun(t, h, "method", "invoke", "gw1/filter", "reset", `{"level":2}`, "--timeout", "10")
	body := compact(t, h.request("POST", "/twins/gw1/modules/filter/methods").body)
	if body != `{"methodName":"reset","payload":{"level":2},"responseTimeoutInSeconds":10,"connectTimeoutInSeconds":0}` {
		t.Errorf("POST body %s", body)
	}
	if out != "{\n  \"status\": 200,\n  \"payload\": {\n    \"done\": true\n  }\n}\n" {
		t.Errorf("printed %q", out)
	}
	code, _, errs := outpost(h, "method", "invoke", "offline", "reboot")
	if code != 1 || errs != "error: hub: 404 DeviceNotOnline: device \"offline\" is not connected\n" {
		t.Errorf("offline: exit %d, %q", code, errs)
	}
	if got := compact(t, h.request("POST", "/twins/offline/methods").body); !strings.Contains(got, `"payload":null,"responseTimeoutInSeconds":30`) {
		t.Errorf("POST body %s", got)
	}
}

func TestHubCLIEvents(t *testing.T) {
	ev := func(seq int, body string) string {
		return fmt.Sprintf(`{"seq":%d, "deviceId":"gw1", "moduleId":"filter", "enqueuedTime":"2025-01-02T03:04:05.678Z", "messageId":"m%d", "properties":{"b":"2","a":"1"}, "systemProperties":{}, "body":%q}`,
			seq, seq, base64.StdEncoding.EncodeToString([]byte(body)))
	}
	var mu sync.Mutex
	var froms []string
	h := startFakeHub(&fakeHub{t: t, custom: func(w http.ResponseWriter, r *http.Request) {
		from := r.URL.Query().Get("from")
		mu.Lock()
		froms = append(froms, from)
		mu.Unlock()
		if from == "7" {
			io.WriteString(w, "["+ev(7, "hello")+",\n "+ev(9, strings.Repeat("x", 70))+"]")
			return
		}
		io.WriteString(w, "[]")
	}})
	out := mustRun(t, h, "events", "--from", "7")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	decoded := func(seq int, body string) string {
		return strings.TrimSuffix(compact(t, ev(seq, body)), "}") + `,"bodyDecoded":"` + body + `"}`
	}
	if len(lines) != 2 || lines[0] != decoded(7, "hello") || lines[1] != decoded(9, strings.Repeat("x", 70)) {
		t.Errorf("printed:\n%s", out)
	}
	mu.Lock()
	if strings.Join(froms, " ") != "7 10" {
		t.Errorf("from of the requests: %v", froms)
	}
	mu.Unlock()
	out = mustRun(t, h, "events", "--from", "7", "-o", "table", "--limit", "2")
	want := "     SEQ  ENQUEUED                  DEVICE                MESSAGE ID            BODY\n" +
		"       7  2025-01-02T03:04:05.678Z  gw1/filter            m7                    hello\n" +
		"       9  2025-01-02T03:04:05.678Z  gw1/filter            m9                    " + strings.Repeat("x", 59) + "…\n"
	if out != want {
		t.Errorf("table:\n%s\nwant:\n%s", out, want)
	}
}

func TestHubCLIErrors(t *testing.T) {
	h := newFakeHub(t, nil)
	tests := []struct {
		args   []string
		noEnv  bool
		code   int
		stderr string
	}{
		{[]string{"device", "list"}, true, 1, "error: no hub connection string: set OUTPOST_HUB_CONNECTION_STRING (the hub writes it to <data>/owner.connection-string) or pass --hub-connection-string\n"},
		{[]string{"device", "list", "-o", "yaml"}, false, 2, "error: -o \"yaml\": want json, table or cs\nusage: outpost device create ID"},
		{[]string{"device"}, false, 2, "error: missing subcommand\n"},
		{[]string{"device", "rename", "a"}, false, 2, "error: unknown subcommand \"rename\"\n"},
		{[]string{"device", "create"}, false, 2, "error: device create takes 1 argument(s), got 0\n"},
		{[]string{"device", "list", "--edge"}, false, 2, "error: --edge does not apply to device list\n"},
		{[]string{"device", "show", "bad/id"}, false, 2, "error: device id \"bad/id\" has '/'"},
		{[]string{"device", "show", "x", "--bogus"}, false, 2, "error: flag provided but not defined: -bogus\n"},
		{[]string{"events", "extra"}, false, 2, "error: events takes no arguments"},
		{[]string{"method", "invoke", "d"}, false, 2, "error: method invoke takes D[/M], NAME and an optional JSON payload"},
		{[]string{"method", "invoke", "d", "m", "{bad"}, false, 1, "error: the method payload is not valid JSON"},
		{[]string{"twin", "show", "a/b/c"}, false, 2, "error: module id \"b/c\" has '/'"},
		{[]string{"twin", "patch", "d", `{"desired":{"a":1}}`}, false, 2, "error: the twin patch: unknown field \"desired\"; want {\"properties\""},
		{[]string{"twin", "patch", "d", `{"foo":1}`}, false, 2, "error: the twin patch: unknown field \"foo\""},
		{[]string{"twin", "patch", "d", `{}`}, false, 2, "error: the twin patch changes nothing: it has neither \"properties\" nor \"tags\""},
		{[]string{"twin", "patch", "d", `{"properties":{"reported":{"a":1}}}`}, false, 2, "error: the twin patch: properties.reported cannot be set here"},
		{[]string{"twin", "replace", "d/m", `{"properties":[1]}`}, false, 2, "error: the twin: \"properties\" must be an object"},
	}
	for _, tt := range tests {
		hub := h
		if tt.noEnv {
			hub = nil
		}
		code, _, errs := outpost(hub, tt.args...)
		if code != tt.code || !strings.HasPrefix(errs, tt.stderr) {
			t.Errorf("outpost %s: exit %d, stderr %q\nwant exit %d, %q", strings.Join(tt.args, " "), code, errs, tt.code, tt.stderr)
		}
	}
	if n := h.count(); n != 0 {
		t.Errorf("%d requests reached the hub", n)
	}
}

func TestHubCLIUnreachable(t *testing.T) {
	h := newFakeHub(t, nil)
	h.srv.Close()
	code, _, errs := outpost(h, "device", "list")
	if code != 1 || !strings.HasPrefix(errs, "error: hub at "+h.srv.URL+" is not reachable") {
		t.Errorf("exit %d, %q", code, errs)
	}
}

func TestHubCLIDeviceUpdate(t *testing.T) {
	h := newFakeHub(t, map[string]answer{
		"GET /devices/sensor1": {body: sensor1JSON},
		"PUT /devices/sensor1": {body: sensor1JSON},
	})
	mustRun(t, h, "device", "update", "sensor1", "--regenerate-keys")
	if got := compact(t, h.request("PUT", "/devices/sensor1").body); !strings.Contains(got, `"authentication":{"type":"sas","symmetricKey":{}}`) ||
		!strings.Contains(got, `"parentScopes":["ms-azure-iot-edge://gw1-42"]`) {
		t.Errorf("--regenerate-keys sent %s, want no keys (the hub makes new ones) and the rest kept", got)
	}
	h.reset()
	mustRun(t, h, "device", "update", "sensor1", "--status", "disabled")
	if got := compact(t, h.request("PUT", "/devices/sensor1").body); !strings.Contains(got, `"status":"disabled"`) || !strings.Contains(got, `"primaryKey":"`) {
		t.Errorf("--status disabled sent %s, want the status changed and the keys kept", got)
	}
	h.reset()
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	mustRun(t, h, "device", "update", "sensor1", "--primary-key", key)
	if got := compact(t, h.request("PUT", "/devices/sensor1").body); !strings.Contains(got, `"primaryKey":"`+key+`"`) || !strings.Contains(got, `"secondaryKey":"`) {
		t.Errorf("--primary-key sent %s, want the new primary and the old secondary", got)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"device", "update", "sensor1"}, "nothing to change"},
		{[]string{"device", "update", "sensor1", "--status", "off"}, "want enabled or disabled"},
		{[]string{"device", "update", "sensor1", "--regenerate-keys", "--primary-key", key}, "give one or the other"},
		{[]string{"device", "update", "sensor1", "--edge"}, "--edge does not apply to device update"},
		{[]string{"device", "create", "x", "--status", "disabled"}, "--status does not apply to device create"},
		{[]string{"device", "update", "a+b", "--status", "disabled"}, "MQTT wildcards"},
	} {
		if code, _, errs := outpost(h, c.args...); code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, %s; want 2 and %q", c.args, code, errs, c.want)
		}
	}
}
