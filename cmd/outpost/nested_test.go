package main

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// device create --edge --parent makes a child edge at a real hub; the hub
// refuses a chain of more than five edges, and the CLI says why.
func TestDeviceCreateNestedEdge(t *testing.T) {
	eh := newEventHub(t)
	run := func(args ...string) (int, string, string) {
		var out, errs bytes.Buffer
		code := cli.Main(args, commands, eh.env(&out, &errs))
		return code, out.String(), errs.String()
	}
	type device struct {
		DeviceScope  string   `json:"deviceScope"`
		ParentScopes []string `json:"parentScopes"`
	}
	scopes := map[string]device{}
	parent := ""
	for _, e := range []string{"l5", "l4", "l3", "l2", "l1"} {
		args := []string{"device", "create", e, "--edge"}
		if parent != "" {
			args = append(args, "--parent", parent)
		}
		code, out, errs := run(args...)
		var d device
		if code != 0 || json.Unmarshal([]byte(out), &d) != nil || d.DeviceScope == "" {
			t.Fatalf("outpost %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
		}
		if parent != "" && !slices.Equal(d.ParentScopes, []string{scopes[parent].DeviceScope}) {
			t.Errorf("%s: parentScopes %v, want %s's deviceScope %s", e, d.ParentScopes, parent, scopes[parent].DeviceScope)
		}
		scopes[e], parent = d, e
	}
	code, _, errs := run("device", "create", "l0", "--edge", "--parent", "l1")
	if code != 1 || !strings.Contains(errs, "edges nest at most 5 deep") || !strings.Contains(errs, "choose a parent higher up") {
		t.Errorf("a sixth edge: exit %d, %s", code, errs)
	}
	if code, out, errs := run("device", "create", "sensor", "--parent", "l1"); code != 0 || !strings.Contains(out, scopes["l1"].DeviceScope) {
		t.Errorf("a leaf under the fifth edge: exit %d\n%s%s", code, out, errs)
	}
}

// outpost events prints each event's edgePath: the edges it crossed, the
// one that sent it to the hub last.
func TestEventsEdgePath(t *testing.T) {
	eh := newEventHub(t)
	ctx := context.Background()
	eh.post(t, []byte("own"))
	gw, _ := eh.h.Identity("gw1")
	l3, err := eh.h.PutDevice(ctx, identity.JSON{DeviceID: "l3", Capabilities: &identity.Capabilities{IoTEdge: true}, ParentScopes: []string{gw.DeviceScope}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eh.h.PutDevice(ctx, identity.JSON{DeviceID: "s3", ParentScopes: []string{l3.DeviceScope}}); err != nil {
		t.Fatal(err)
	}
	ack, err := eh.h.Messages(ctx, "gw1", protocol.Messages{Instance: "edge:gw1.a", Queue: "$upstream/p1",
		Msgs: []protocol.Message{{Seq: 1, ID: "nested", Source: "devices/s3", EdgePath: []string{"l3"}, Body: []byte("below")}}})
	if err != nil || ack.Appended != 1 {
		t.Fatalf("%+v %v", ack, err)
	}
	var out, errs bytes.Buffer
	if code := cli.Main([]string{"events"}, commands, eh.env(&out, &errs)); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"edgePath":["gw1"]`) || !strings.Contains(lines[1], `"deviceId":"s3"`) ||
		!strings.Contains(lines[1], `"edgePath":["l3","gw1"]`) {
		t.Errorf("printed\n%s", out.String())
	}
}
