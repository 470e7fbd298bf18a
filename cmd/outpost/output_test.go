package main

import (
	"regexp"
	"strings"
	"testing"
)

const filterJSON = `{"deviceId":"gw1","moduleId":"filter","authentication":{"type":"sas","symmetricKey":{"primaryKey":"bWsx","secondaryKey":"bWsy"}}}`

// TestOutputTable: -o table is honoured by every command that prints one
// answer of the hub (it was ignored by twin show, module show, method
// invoke, deploy and c2d send): FIELD VALUE rows, no JSON.
func TestOutputTable(t *testing.T) {
	twin := `{"deviceId":"sensor1","tags":{},"properties":{"desired":{"interval":10,"$metadata":{"$lastUpdated":"2025-01-01T00:00:00Z"},"$version":2},"reported":{"$version":1}}}`
	h := newFakeHub(t, map[string]answer{
		"GET /twins/sensor1":                         {body: twin},
		"GET /devices/gw1/modules/filter":            {body: filterJSON},
		"GET /devices/sensor1":                       {body: sensor1JSON},
		"POST /twins/sensor1/methods":                {body: `{"status":200,"payload":{"ok":true}}`},
		"POST /devices/sensor1/messages/deviceBound": {status: 204},
	})
	tests := []struct {
		args []string
		want string // a row that must be printed
	}{
		{[]string{"twin", "show", "sensor1"}, `(?m)^properties\.desired\.interval +10$`},
		{[]string{"module", "show", "gw1", "filter"}, `(?m)^connectionString +HostName=hub\.test:8080;DeviceId=gw1;ModuleId=filter;SharedAccessKey=bWsx$`},
		{[]string{"device", "show", "sensor1"}, `(?m)^parentScopes\[0\] +ms-azure-iot-edge://gw1-42$`},
		{[]string{"method", "invoke", "sensor1", "reboot"}, `(?m)^payload\.ok +true$`},
		{[]string{"c2d", "send", "sensor1", "hi", "--message-id", "m1"}, `(?m)^messageId +m1$`},
	}
	for _, tt := range tests {
		args := append(tt.args, "-o", "table")
		code, out, errs := outpost(h, args...)
		if code != 0 || !strings.HasPrefix(out, "FIELD ") || !regexp.MustCompile(tt.want).MatchString(out) || strings.Contains(out, "{\n") {
			t.Errorf("outpost %s: exit %d, stderr %s\n%s\nwant a table with %s", strings.Join(args, " "), code, errs, out, tt.want)
		}
	}
	if out := mustRun(t, h, "twin", "show", "sensor1", "-o", "table"); strings.Contains(out, "$metadata") {
		t.Errorf("twin table shows $metadata:\n%s", out)
	}
}

// TestConnectionStringAlone: device connection-string ID, device show ID
// -o cs and module connection-string D M print the string and nothing else.
func TestConnectionStringAlone(t *testing.T) {
	h := newFakeHub(t, map[string]answer{
		"GET /devices/sensor1":            {body: sensor1JSON},
		"GET /devices/gw1/modules/filter": {body: filterJSON},
	})
	dev := "HostName=hub.test:8080;DeviceId=sensor1;SharedAccessKey=cGsx\n"
	mod := "HostName=hub.test:8080;DeviceId=gw1;ModuleId=filter;SharedAccessKey=bWsx\n"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"device", "connection-string", "sensor1"}, dev},
		{[]string{"device", "show", "sensor1", "-o", "cs"}, dev},
		{[]string{"module", "connection-string", "gw1", "filter"}, mod},
		{[]string{"module", "connection-string", "gw1/filter"}, mod},
		{[]string{"module", "show", "gw1/filter", "-o", "cs"}, mod},
	} {
		if out := mustRun(t, h, c.args...); out != c.want {
			t.Errorf("outpost %s printed %q, want %q", strings.Join(c.args, " "), out, c.want)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"device", "list", "-o", "cs"}, "error: -o cs: device list prints no single identity"},
		{[]string{"twin", "show", "sensor1", "-o", "cs"}, `error: -o "cs": want json or table`},
		{[]string{"device", "show", "sensor1", "-o", "yaml"}, `error: -o "yaml": want json, table or cs`},
		{[]string{"device", "connection-string", "sensor1", "-o", "json"}, "error: device connection-string prints the connection string alone"},
	} {
		if code, _, errs := outpost(h, c.args...); code != 2 || !strings.HasPrefix(errs, c.want) {
			t.Errorf("outpost %s: exit %d, %q; want 2 and %q", strings.Join(c.args, " "), code, errs, c.want)
		}
	}
}

// TestIdentitySpellings: module commands take D M or D/M, twin commands
// D/M or D M; both reach the same identity.
func TestIdentitySpellings(t *testing.T) {
	h := newFakeHub(t, map[string]answer{
		"GET /devices/gw1/modules/filter": {body: filterJSON},
		"GET /twins/gw1/modules/filter":   {body: `{"deviceId":"gw1","moduleId":"filter"}`},
		"PATCH /twins/gw1/modules/filter": {body: `{"deviceId":"gw1","moduleId":"filter"}`},
	})
	for _, args := range [][]string{
		{"module", "show", "gw1", "filter"},
		{"module", "show", "gw1/filter"},
	} {
		mustRun(t, h, args...)
		h.request("GET", "/devices/gw1/modules/filter")
		h.reset()
	}
	for _, args := range [][]string{
		{"twin", "show", "gw1/filter"},
		{"twin", "show", "gw1", "filter"},
	} {
		mustRun(t, h, args...)
		h.request("GET", "/twins/gw1/modules/filter")
		h.reset()
	}
	mustRun(t, h, "twin", "patch", "gw1", "filter", `{"properties":{"desired":{"a":1}}}`)
	h.request("PATCH", "/twins/gw1/modules/filter")
}
