package twin

import (
	"strings"
	"testing"
)

// Fields shows each leaf with the replica and time that wrote it, and the
// edge's own writes as pending until the hub acknowledges them.
func TestFieldsOriginAndPending(t *testing.T) {
	clk := &clockT{ms: 1_750_000_000_000}
	hub := openStore(t, openDB(t, ""), Cloud, "hub", clk)
	edge := openStore(t, openDB(t, ""), Edge, "gw1", clk)
	if _, err := hub.PatchDesired(ctx, "dev1", []byte(`{"interval":5,"gone":{"x":1}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := hub.PatchDesired(ctx, "dev1", []byte(`{"gone":null}`)); err != nil {
		t.Fatal(err)
	}
	syncPair(t, edge, hub, 100)
	sess, _ := edge.BeginSession()
	if _, err := edge.PatchReported(ctx, "dev1", sess, []byte(`{"temp":21}`)); err != nil {
		t.Fatal(err)
	}
	byPath := func() map[string]FieldInfo {
		fs, err := edge.Fields("dev1", "hub")
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]FieldInfo{}
		for _, f := range fs {
			m[f.Section+":"+f.Path] = f
		}
		return m
	}
	m := byPath()
	iv, temp := m["desired:interval"], m["reported:temp"]
	if string(iv.Value) != "5" || !strings.HasPrefix(iv.Origin, "hub.") || iv.Pending || iv.Time == "" {
		t.Errorf("desired.interval = %+v, want 5 from the hub, not pending", iv)
	}
	if string(temp.Value) != "21" || temp.Origin != string(edge.Replica()) || !temp.Pending {
		t.Errorf("reported.temp = %+v, want 21 from %s, pending (the hub has not acknowledged it)", temp, edge.Replica())
	}
	if _, ok := m["desired:gone.x"]; ok {
		t.Errorf("desired.gone.x (cleared by the hub) listed: %+v", m)
	}
	syncPair(t, edge, hub, 100)
	if err := edge.Ack(ctx, "hub", hub.Replica(), hub.VV()); err != nil {
		t.Fatal(err)
	}
	if f := byPath()["reported:temp"]; f.Pending {
		t.Errorf("reported.temp still pending after the hub acknowledged it: %+v", f)
	}
	if _, err := edge.Fields("nosuch", "hub"); err == nil {
		t.Error("Fields of a missing twin: no error")
	}
}
