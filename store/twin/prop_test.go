package twin

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/outpost-edge/outpost/store/crdt"
)

// genPatch draws a reported patch over a small set of overlapping paths:
// sets, nested objects, arrays, nulls, and now and then something invalid.
func genPatch(t *rapid.T) string {
	keys := []string{"a", "b", "c", "fw", "net"}
	var gen func(depth int) string
	gen = func(depth int) string {
		n := rapid.IntRange(1, 3).Draw(t, "n")
		parts := make([]string, 0, n)
		seen := map[string]bool{}
		for i := 0; i < n; i++ {
			k := rapid.SampledFrom(keys).Draw(t, "key")
			if seen[k] {
				continue
			}
			seen[k] = true
			var v string
			switch rapid.IntRange(0, 6).Draw(t, "kind") {
			case 0:
				v = "null"
			case 1:
				v = fmt.Sprint(rapid.IntRange(-5, 5).Draw(t, "int"))
			case 2:
				v = fmt.Sprintf("%q", rapid.StringMatching(`[a-z]{0,4}`).Draw(t, "str"))
			case 3:
				v = "[1,\"x\"]"
			case 4:
				if depth < 3 {
					v = gen(depth + 1)
				} else {
					v = "{}"
				}
			case 5:
				v = "true"
			case 6:
				v = rapid.SampledFrom([]string{`{"bad.key":1}`, `[null]`, `9007199254740993`}).Draw(t, "bad")
			}
			parts = append(parts, fmt.Sprintf("%q:%s", k, v))
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	return gen(0)
}

// TestProp12Rendering is property 12 of crdt-twin.md §3.8: interior
// $lastUpdated ≥ its children's, $version strictly increases by one per
// change on a replica, and everything admitted locally is within limits.
func TestProp12Rendering(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		wall := int64(1_750_000_000_000)
		now := func() int64 {
			wall += rapid.Int64Range(-2000, 5000).Draw(rt, "tick") // clocks also go back
			return wall
		}
		s, err := Open(ctx, openDB(t, ""), Options{Role: Edge, Name: "gw", Now: now})
		if err != nil {
			rt.Fatal(err)
		}
		sess, _ := s.BeginSession()
		last := int64(1)
		for i, n := 0, rapid.IntRange(1, 25).Draw(rt, "ops"); i < n; i++ {
			p := genPatch(rt)
			v, err := s.PatchReported(ctx, "d", sess, []byte(p))
			if err != nil {
				if _, verr := ParsePatch([]byte(p), Limits{}); verr == nil {
					rt.Fatalf("valid patch %s refused: %v", p, err)
				}
				continue
			}
			if v != last+1 {
				rt.Fatalf("$version went %d → %d", last, v)
			}
			last = v
			view, _ := s.Get("d")
			if view.ReportedVersion != v {
				rt.Fatalf("view $version %d, patch answered %d", view.ReportedVersion, v)
			}
			if err := Validate(view.Reported, Limits{}); err != nil {
				rt.Fatalf("admitted state breaks the limits: %v", err)
			}
			checkMetadata(rt, view.ServiceJSON())
		}
	})
}

func checkMetadata(t *rapid.T, svc []byte) {
	var doc struct {
		Properties struct {
			Reported map[string]any `json:"reported"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(svc, &doc); err != nil {
		t.Fatal(err)
	}
	md, _ := doc.Properties.Reported["$metadata"].(map[string]any)
	var walk func(node map[string]any, path string)
	walk = func(node map[string]any, path string) {
		if _, ok := node["$lastUpdated"]; !ok && path == "reported" && len(node) == 0 {
			return // never written
		}
		parent, err := time.Parse(time.RFC3339, node["$lastUpdated"].(string))
		if err != nil {
			t.Fatalf("%s: $lastUpdated %v: %v", path, node["$lastUpdated"], err)
		}
		for k, v := range node {
			child, ok := v.(map[string]any)
			if !ok || k == "$lastUpdated" {
				continue
			}
			ct, _ := time.Parse(time.RFC3339, child["$lastUpdated"].(string))
			if ct.After(parent) {
				t.Fatalf("%s.%s updated %v after its parent %v", path, k, ct, parent)
			}
			walk(child, path+"."+k)
		}
	}
	walk(md, "reported")
}

func FuzzDecodeBatch(f *testing.F) {
	clk := &clockT{ms: 1_750_000_000_000}
	edge := openStore(f, openDB(f, ""), Edge, "gw1", clk)
	sess, _ := edge.BeginSession()
	edge.PatchReported(ctx, "d", sess, []byte(`{"a":1,"o":{"b":[1,2]},"z":null}`))
	edge.PatchReported(ctx, "d/m", sess, []byte(`{"x":"y"}`))
	b, _, _ := edge.Delta(crdt.VV{}, 100)
	seed, _ := b.MarshalCBOR()
	f.Add(seed)
	f.Add([]byte{0x84, 0x80, 0x00, 0x80, 0x80})
	hub := openStore(f, openDB(f, ""), Cloud, "hub", clk)
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeBatch(data)
		if err != nil {
			return
		}
		vv := hub.VV()
		if _, err := hub.ApplyDelta(ctx, b); err != nil {
			if got := hub.VV(); !vvEqual(got, vv) {
				t.Fatalf("refused batch moved the VV %v → %v", vv, got)
			}
		}
	})
}

func FuzzDecodeReg(f *testing.F) {
	f.Add([]byte{0xa1, 0x01, 0xa1, 0x03, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeReg(data)
		if err != nil {
			return
		}
		d := &crdt.Doc{}
		if !r.W.IsZero() {
			d.Merge(crdt.Field{Section: crdt.Reported, Path: crdt.Path{"k"}, W: r.W})
		}
		_ = d.Visible(crdt.Reported)
	})
}
