package crdt

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }

func TestApplyErrors(t *testing.T) {
	k, d := at(0, 1, "hub"), Dot{"hub", 1}
	for _, tc := range []struct {
		name  string
		sec   Section
		patch map[string]any
		want  error
	}{
		{"unsupported type", Desired, map[string]any{"a": 1, "b": struct{}{}}, ErrUnsupportedValue},
		{"nan", Desired, map[string]any{"a": math.NaN()}, ErrUnsupportedValue},
		{"bad number", Desired, map[string]any{"a": json.Number("0x1")}, ErrUnsupportedValue},
		{"dot in key", Desired, map[string]any{"a.b": 1}, ErrBadKey},
		{"empty key", Desired, map[string]any{"x": map[string]any{"": 1}}, ErrBadKey},
		{"overlay via Apply", Overlay, map[string]any{"a": 1}, ErrBadSection},
		{"zero section", 0, map[string]any{"a": 1}, ErrBadSection},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := &Doc{}
			if _, err := doc.Apply(tc.sec, tc.patch, k, d); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if len(doc.Fields()) != 0 {
				t.Fatal("failed Apply changed the doc")
			}
		})
	}
}

func TestApplyTable(t *testing.T) {
	for _, tc := range []struct {
		name, before, patch, want string
		replace                   bool
	}{
		{"nested set through scalar", `{"a":1}`, `{"a":{"b":2}}`, `{"a":{"b":2}}`, false},
		{"delete through missing is a no-op", `{}`, `{"a":{"b":null}}`, `{}`, false},
		{"delete through scalar is a no-op", `{"a":1}`, `{"a":{"b":null}}`, `{"a":1}`, false},
		{"last child removed leaves {}", `{"a":{"b":1}}`, `{"a":{"b":null}}`, `{"a":{}}`, false},
		{"{} merges into an object", `{"a":{"b":1}}`, `{"a":{}}`, `{"a":{"b":1}}`, false},
		{"arrays are atomic", `{"a":[1,2]}`, `{"a":[3]}`, `{"a":[3]}`, false},
		{"set hides old children", `{"a":{"b":1}}`, `{"a":5}`, `{"a":5}`, false},
		{"replace drops the rest", `{"a":1,"b":{"c":2}}`, `{"b":{"d":3}}`, `{"b":{"d":3}}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &Doc{}
			mustApply(t, d, Desired, tc.before, at(0, 1, "hub"), Dot{"hub", 1})
			var m map[string]any
			dec := json.NewDecoder(stringsReader(tc.patch))
			dec.UseNumber()
			if err := dec.Decode(&m); err != nil {
				t.Fatal(err)
			}
			var err error
			if tc.replace {
				_, err = d.Replace(Desired, m, at(0, 2, "hub"), Dot{"hub", 2})
			} else {
				_, err = d.Apply(Desired, m, at(0, 2, "hub"), Dot{"hub", 2})
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := canon(d.Visible(Desired)); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
			checkLastUpdated(t, d, Desired)
		})
	}
}

// checkLastUpdated: every visible path has an entry and interior nodes are
// at least their children.
func checkLastUpdated(t *testing.T, d *Doc, sec Section) {
	t.Helper()
	lu := d.LastUpdated(sec)
	for p, h := range lu {
		if p == "" {
			continue
		}
		pp := ParsePath(p)
		parent := lu[pp[:len(pp)-1].String()]
		if parent.Less(h) {
			t.Fatalf("$lastUpdated of %q below its child %q", pp[:len(pp)-1], p)
		}
	}
	for _, e := range d.visible(sec) {
		if _, ok := lu[e.path.String()]; !ok {
			t.Fatalf("no $lastUpdated for %q", e.path)
		}
	}
}

func TestPathRoundTrip(t *testing.T) {
	for _, p := range []Path{{}, {"a"}, {"a", "b", "c"}} {
		if got := ParsePath(p.String()); got.String() != p.String() || len(got) != len(p) {
			t.Fatalf("%q round-trips to %q", p, got)
		}
	}
}
