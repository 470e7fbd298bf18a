package hub

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/twin"
)

const baseContent = `{"modulesContent":{
	"$edgeAgent":{"properties.desired":{"schemaVersion":"1.1","runtime":{"type":"docker","settings":{}},"systemModules":{},"modules":{"sensor":{"type":"process","status":"running","restartPolicy":"always","settings":{"image":"sensor"}}}}},
	"$edgeHub":{"properties.desired":{"schemaVersion":"1.1","routes":{"up":"FROM /messages/* INTO $upstream"},"storeAndForwardConfiguration":{"timeToLiveSecs":7200}}}}}`

// configFixture is the hub fixture with three more edges tagged env=prod,
// prod and dev.
func configFixture(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t)
	for id, env := range map[string]string{"e1": "prod", "e2": "prod", "e3": "dev"} {
		if _, err := f.h.PutDevice(f.ctx, identity.JSON{DeviceID: id, Capabilities: &identity.Capabilities{IoTEdge: true}}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.h.UpdateTwin(f.ctx, id, []byte(`{"tags":{"env":"`+env+`"}}`), false); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *fixture) putConfig(t *testing.T, id, body string, hdr map[string]string) (int, Configuration) {
	t.Helper()
	code, out := f.do(t, "PUT", "/configurations/"+id, ownerToken(), []byte(body), hdr)
	var c Configuration
	if code == 200 {
		if err := json.Unmarshal(out, &c); err != nil {
			t.Fatal(err)
		}
	} else {
		t.Logf("PUT /configurations/%s: %d %s", id, code, out)
	}
	return code, c
}

// desiredOf returns a module twin's desired properties (without $version
// and $metadata) as JSON.
func desiredOf(t *testing.T, f *fixture, id string) map[string]any {
	t.Helper()
	doc, err := f.h.TwinDoc(id)
	if err != nil {
		t.Fatal(err)
	}
	d := doc["properties"].(map[string]any)["desired"].(map[string]any)
	delete(d, "$version")
	delete(d, "$metadata")
	return d
}

// eventually polls cond for up to 10 s (the deployer runs after writes,
// debounced).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10 s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func modulesOf(t *testing.T, f *fixture, edge string) string {
	t.Helper()
	m, _ := desiredOf(t, f, edge+"/$edgeAgent")["modules"].(map[string]any)
	var names []string
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}

// TestConfigurationsTargetEdges: a deployment goes to the edges its
// targetCondition matches and not to the others; a layered deployment adds
// to it; a base deployment of higher priority wins; a tag change brings an
// edge in; the metrics count targeted and applied edges.
func TestConfigurationsTargetEdges(t *testing.T) {
	f := configFixture(t)
	code, c := f.putConfig(t, "prod-base", `{"id":"prod-base","targetCondition":"tags.env='prod'","priority":10,"content":`+baseContent+`,
		"metrics":{"queries":{"running":"SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND properties.reported.lastDesiredStatus.code = 200"}}}`, nil)
	if code != 200 || c.ETag == "" || c.SchemaVersion != "1.0" || c.CreatedTimeUtc == neverTime {
		t.Fatalf("PUT: %d %+v", code, c)
	}
	for _, e := range []string{"e1", "e2"} {
		eventually(t, e+" gets prod-base", func() bool { return modulesOf(t, f, e) == "sensor" })
		// $edgeHub is written after $edgeAgent, in its own command.
		eventually(t, e+" gets prod-base's routes", func() bool {
			r, _ := desiredOf(t, f, e+"/$edgeHub")["routes"].(map[string]any)
			return r["up"] == "FROM /messages/* INTO $upstream"
		})
		if _, err := f.h.Identity(e + "/sensor"); err != nil {
			t.Fatalf("%s/sensor has no identity: %v", e, err)
		}
	}
	if m := modulesOf(t, f, "e3"); m != "" {
		t.Fatalf("e3 (dev) got modules %q", m)
	}
	// Layered on top: adds a module to every prod edge.
	code, _ = f.putConfig(t, "prod-extra", `{"id":"prod-extra","targetCondition":"tags.env='prod'","priority":20,"content":{"modulesContent":{
		"$edgeAgent":{"properties.desired.modules.extra":{"type":"process","status":"running","restartPolicy":"always","settings":{"image":"extra"}}},
		"$edgeHub":{"properties.desired.routes.extra":"FROM /messages/modules/extra/* INTO $upstream"}}}}`, nil)
	if code != 200 {
		t.Fatal(code)
	}
	eventually(t, "e1 gets the layer", func() bool { return modulesOf(t, f, "e1") == "extra,sensor" })
	eventually(t, "e1 gets the layer's route", func() bool {
		routes, _ := desiredOf(t, f, "e1/$edgeHub")["routes"].(map[string]any)
		return len(routes) == 2
	})
	// A base of higher priority for e2 alone wins there (the layer stays).
	other := strings.Replace(baseContent, `"sensor":{`, `"other":{`, 1)
	if code, _ := f.putConfig(t, "e2-special", `{"id":"e2-special","targetCondition":"deviceId = 'e2'","priority":50,"content":`+other+`}`, nil); code != 200 {
		t.Fatal(code)
	}
	eventually(t, "e2 gets e2-special", func() bool { return modulesOf(t, f, "e2") == "extra,other" })
	if m := modulesOf(t, f, "e1"); m != "extra,sensor" {
		t.Fatalf("e1 changed to %q", m)
	}
	// A tag change brings e3 in.
	if _, err := f.h.UpdateTwin(f.ctx, "e3", []byte(`{"tags":{"env":"prod"}}`), false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "e3 joins prod", func() bool { return modulesOf(t, f, "e3") == "extra,sensor" })

	code, out := f.do(t, "GET", "/configurations/prod-base", ownerToken(), nil, nil)
	if code != 200 {
		t.Fatalf("GET: %d %s", code, out)
	}
	var got Configuration
	_ = json.Unmarshal(out, &got)
	if r := got.SystemMetrics.Results; r["targetedCount"] != 3 || r["appliedCount"] != 2 {
		t.Fatalf("system metrics: %v (want 3 targeted, 2 applied: e2 runs e2-special)", r)
	}
	if _, ok := got.Metrics.Results["running"]; !ok || got.Metrics.Queries["running"] == "" {
		t.Fatalf("metrics: %+v", got.Metrics)
	}
	code, out = f.do(t, "GET", "/configurations", ownerToken(), nil, nil)
	var list []Configuration
	if code != 200 || json.Unmarshal(out, &list) != nil || len(list) != 3 {
		t.Fatalf("list: %d %s", code, out)
	}
}

// TestConfigurationUpdates: a deployment's etag guards updates (412 when
// stale), its content never changes, a bad targetCondition names its
// position, and a delete leaves the edges' modules as they are but forgets
// that the deployment was applied.
func TestConfigurationUpdates(t *testing.T) {
	f := configFixture(t)
	body := `{"id":"d1","targetCondition":"tags.env='prod'","priority":1,"content":` + baseContent + `}`
	_, c := f.putConfig(t, "d1", body, nil)
	eventually(t, "e1 deployed", func() bool { return modulesOf(t, f, "e1") == "sensor" })
	moved := strings.Replace(body, `"priority":1`, `"priority":2`, 1)
	if code, c2 := f.putConfig(t, "d1", moved, map[string]string{"If-Match": `"` + c.ETag + `"`}); code != 200 || c2.Priority != 2 || c2.ETag == c.ETag {
		t.Fatalf("update with the current etag: %d %+v", code, c2)
	}
	if code, _ := f.putConfig(t, "d1", body, map[string]string{"If-Match": `"` + c.ETag + `"`}); code != 412 {
		t.Fatalf("update with a stale etag: %d, want 412", code)
	}
	changed := strings.Replace(body, `"image":"sensor"`, `"image":"sensor2"`, 1)
	if code, _ := f.putConfig(t, "d1", changed, nil); code != 400 {
		t.Fatalf("content change: %d, want 400", code)
	}
	code, out := f.do(t, "PUT", "/configurations/d2", ownerToken(), []byte(`{"id":"d2","targetCondition":"tags.env = = 'x'","content":`+baseContent+`}`), nil)
	if code != 400 || !strings.Contains(string(out), "at ") {
		t.Fatalf("bad targetCondition: %d %s", code, out)
	}
	if code, _ := f.do(t, "DELETE", "/configurations/d1", ownerToken(), nil, nil); code != 204 {
		t.Fatalf("DELETE: %d", code)
	}
	eventually(t, "e1 forgets d1", func() bool { d, _ := f.h.fsm.deployed("e1"); return len(d) == 0 })
	if m := modulesOf(t, f, "e1"); m != "sensor" {
		t.Fatalf("e1's modules after the delete: %q (kept as they were)", m)
	}
	if code, _ := f.do(t, "GET", "/configurations/d1", ownerToken(), nil, nil); code != 404 {
		t.Fatalf("GET after delete: %d", code)
	}
}

// TestDeployerReadsOnlyWhatChanged: a write to a module's twin asks the
// deployer for nothing, one to a device's twin or identity for that
// device alone (edgeDocs then reads only the edges among them), a change
// of the deployments for every edge.
func TestDeployerReadsOnlyWhatChanged(t *testing.T) {
	for _, c := range []struct {
		cmd  any
		want []string
		all  bool
	}{
		{writeTwin{ID: "e1/$edgeAgent", Desired: []byte(`{"x":1}`)}, nil, false},
		{writeTwin{ID: "e2", Tags: []byte(`{"env":"dev"}`)}, []string{"e2"}, false},
		{mergeTwins{Batch: twin.Batch{Twins: []twin.TwinDelta{{ID: "e1"}, {ID: "dev1"}, {ID: "e3/m"}}}}, []string{"e1", "dev1"}, false},
		{putIdentities{IDs: []identity.Identity{{DeviceID: "e4"}, {DeviceID: "e4", ModuleID: "$edgeHub"}}}, []string{"e4"}, false},
		{applyConfiguration{Device: "e1", AtScale: true}, nil, false},
		{applyConfiguration{Device: "e1"}, []string{"e1"}, false},
		{appendEvents{Edge: "e1"}, nil, false},
		{putConfiguration{}, nil, true},
		{deleteConfiguration{ID: "c"}, nil, true},
	} {
		got, all := deployTargets(c.cmd)
		if !slices.Equal(got, c.want) || all != c.all {
			t.Errorf("%T: %v %v, want %v %v", c.cmd, got, all, c.want, c.all)
		}
	}
	f := configFixture(t)
	if docs := f.h.edgeDocs(map[string]bool{"e2": true, "dev1": true, "nope": true}); len(docs) != 1 || docs[0].id != "e2" {
		t.Fatalf("edgeDocs = %v, want e2 alone", docs)
	}
}

// TestDeployedID: a deployment id may hold '@'; what an edge got is told
// apart by the last one.
func TestDeployedID(t *testing.T) {
	for entry, want := range map[string]string{"base@3": "base", "a@b@12": "a@b", "x": "x"} {
		if got := deployedID(entry); got != want {
			t.Errorf("deployedID(%q) = %q, want %q", entry, got, want)
		}
	}
}
