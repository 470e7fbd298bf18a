package crdt

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzApplyPatch: arbitrary JSON patches never panic, render to JSON that
// round-trips, and on an empty doc equal the sequential interpreter.
func FuzzApplyPatch(f *testing.F) {
	for _, s := range []string{
		`{"a":1}`, `{"a":{"b":null,"c":[1,"x",true]}}`, `{"a":{}}`, `{"a.b":1}`,
		`{"":{"x":null}}`, `{"a":{"b":{"c":{"d":1.50e3}}}}`, `{"a":"<&>\u2028"}`, `[1]`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(fuzzOne)
}

// fuzzOne is the body of FuzzApplyPatch.
func fuzzOne(t *testing.T, data []byte) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var patch map[string]any
	if dec.Decode(&patch) != nil || patch == nil {
		return
	}
	d := &Doc{}
	if _, err := d.Apply(Reported, patch, at(1, 1, "gw1"), Dot{"gw1", 1}); err == nil {
		if got, want := canon(d.Visible(Reported)), canon(oracleDoc([]simOp{{patch: patch}})); got != want {
			t.Fatalf("visible %s, interpreter %s", got, want)
		}
	}
	_, _ = d.Replace(Desired, patch, at(0, 2, "hub"), Dot{"hub", 2})
	_, _ = d.Apply(Reported, patch, at(1, 3, "gw1"), Dot{"gw1", 3})
	for k, v := range patch {
		_, _ = d.SetOverride(Path{k}, v, at(0, 4, "gw1"), Dot{"gw1", 4})
	}
	for _, sec := range []Section{Desired, Reported} {
		checkRoundTrip(t, d.Visible(sec))
		_ = d.LastUpdated(sec)
	}
	checkRoundTrip(t, d.Effective())
	d.StableGC(func(Dot) bool { return true })
}

func checkRoundTrip(t *testing.T, v map[string]any) {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("visible does not marshal: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var back any
	if err := dec.Decode(&back); err != nil {
		t.Fatal(err)
	}
	if b2, _ := json.Marshal(back); !bytes.Equal(b, b2) {
		t.Fatalf("round trip %s != %s", b, b2)
	}
}
