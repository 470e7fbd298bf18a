package crdt

import (
	"encoding/json"
	"errors"
	"testing"
)

// Worked examples of reference/crdt-twin.md §3.9.

func at(session, wall int64, origin ReplicaID) Key {
	k := Key{TS: HLC{Wall: wall}, Origin: origin}
	if session != 0 {
		k.Session = HLC{Wall: session}
	}
	return k
}

func mustApply(t *testing.T, d *Doc, sec Section, patch string, k Key, dot Dot) []Field {
	t.Helper()
	dec := json.NewDecoder(stringsReader(patch))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	fs, err := d.Apply(sec, m, k, dot)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func mergeAllInto(d *Doc, fs []Field) {
	for _, f := range fs {
		d.Merge(f)
	}
}

func TestExampleA(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sessions bool
		want     string
	}{
		{"session-epoch keys keep the module's last write", true, `{"fw":{"slotB":"2.1"}}`},
		{"plain HLC keys lose it to 25 ms of skew", false, `{}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s1, s2 := int64(0), int64(0)
			if tc.sessions {
				s1, s2 = 500, 1985
			}
			base := &Doc{}
			mustApply(t, base, Reported, `{"fw":{"slotA":"1.0","slotB":"2.0"}}`, at(s1, 1000, "E1"), Dot{"E1", 40})
			e1, e2, c := base.Clone(), base.Clone(), base.Clone()
			del := mustApply(t, e1, Reported, `{"fw":null}`, at(s1, 2000, "E1"), Dot{"E1", 41})
			set := mustApply(t, e2, Reported, `{"fw":{"slotB":"2.1"}}`, at(s2, 1990, "E2"), Dot{"E2", 7})
			mergeAllInto(c, set)
			mergeAllInto(c, del)
			mergeAllInto(e1, set)
			mergeAllInto(e2, del)
			for name, d := range map[string]*Doc{"C": c, "E1": e1, "E2": e2} {
				if got := canon(d.Visible(Reported)); got != tc.want {
					t.Fatalf("%s: reported = %s, want %s", name, got, tc.want)
				}
			}
			if !tc.sessions {
				return
			}
			lu := c.LastUpdated(Reported)
			if lu["fw"].Wall != 1990 || lu["fw.slotB"].Wall != 1990 || lu[""].Wall != 1990 {
				t.Fatalf("$lastUpdated = %v, want E2's 1990 ms", lu)
			}
		})
	}
}

func TestExampleB(t *testing.T) {
	for _, tc := range []struct {
		name       string
		opWall     int64 // E1's stamp for the override
		cloudOps   []string
		want       string
		superseded bool
	}{
		{"cloud delete supersedes the override", 250, []string{`{"cfg":{"mode":null}}`, `{"cfg":{"rate":7}}`},
			`{"cfg":{"rate":7}}`, true},
		{"E1 an hour fast changes nothing", 3_600_250, []string{`{"cfg":{"mode":null}}`, `{"cfg":{"rate":7}}`},
			`{"cfg":{"rate":7}}`, true},
		{"untouched path keeps the override", 250, []string{`{"cfg":{"rate":7}}`},
			`{"cfg":{"mode":"boost","rate":7}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Doc{}
			mustApply(t, c, Desired, `{"cfg":{"mode":"eco","rate":5}}`, at(0, 100, "C"), Dot{"C", 1})
			e1 := c.Clone()
			ov, err := e1.SetOverride(Path{"cfg", "mode"}, "boost", at(0, tc.opWall, "E1"), Dot{"E1", 1})
			if err != nil {
				t.Fatal(err)
			}
			if ov.W.Basis != at(0, 100, "C") {
				t.Fatalf("basis = %v", ov.W.Basis)
			}
			if got := canon(e1.Effective()); got != `{"cfg":{"mode":"boost","rate":5}}` {
				t.Fatalf("offline effective = %s", got)
			}
			var cloud []Field
			for i, p := range tc.cloudOps {
				cloud = append(cloud, mustApply(t, c, Desired, p, at(0, 300+10*int64(i), "C"), Dot{"C", uint64(2 + i)})...)
			}
			mergeAllInto(e1, cloud)
			c.Merge(ov)
			for name, d := range map[string]*Doc{"C": c, "E1": e1} {
				if got := canon(d.Effective()); got != tc.want {
					t.Fatalf("%s: effective = %s, want %s", name, got, tc.want)
				}
				o := d.Overrides()
				if len(o) != 1 || o[0].Superseded != tc.superseded || canon(o[0].Value) != `"boost"` {
					t.Fatalf("%s: overrides = %+v", name, o)
				}
			}
		})
	}
}

func TestExampleC(t *testing.T) {
	e2, e1 := &Doc{}, &Doc{}
	set := mustApply(t, e2, Reported, `{"temp":20}`, at(1, 100, "E2"), Dot{"E2", 5})
	del := mustApply(t, e1, Reported, `{"temp":null}`, at(1, 150, "E1"), Dot{"E1", 9})
	receive := func(d *Doc, vv VV, fs []Field, c Commit) {
		for _, f := range fs {
			if !vv.Covers(f.Dot()) {
				d.Merge(f)
			}
		}
		vv.Advance(c)
	}
	c, vv := &Doc{}, VV{"E1": 8, "E2": 4}
	receive(c, vv, del, Commit{"E1", 9})
	receive(c, vv, set, Commit{"E2", 5})
	rev, rvv := &Doc{}, VV{"E1": 8, "E2": 4}
	receive(rev, rvv, set, Commit{"E2", 5})
	receive(rev, rvv, del, Commit{"E1", 9})
	if !c.Equal(rev) || canon(c.Visible(Reported)) != `{}` || canon(vv) != `{"E1":9,"E2":5}` {
		t.Fatalf("delivery order matters: %s vs %s", canon(c.Fields()), canon(rev.Fields()))
	}
	// Everybody acked {E1:9, E2:5}: E1:9 is stable and temp disappears.
	removed := c.StableGC(func(d Dot) bool { return vv.Covers(d) })
	if len(removed) == 0 || len(c.Fields()) != 0 || c.Tombstones() != 0 {
		t.Fatalf("GC left %v (removed %v)", c.Fields(), removed)
	}
	// QoS1 redelivery of E2's old batch: covered, so discarded.
	receive(c, vv, set, Commit{"E2", 5})
	if got := canon(c.Visible(Reported)); got != `{}` {
		t.Fatalf("temp resurrected: %s", got)
	}
	// Without the covered-dot rule it would come back: the rule is the guard.
	if naive := c.Clone(); !naive.Merge(set[0]) || canon(naive.Visible(Reported)) == `{}` {
		t.Fatal("expected the naive merge to resurrect temp")
	}
	// E2 restored from yesterday's backup (bound 4) keeps its id: detected.
	restored := NewSeq(SeqOptions{Next: 5})
	if err := CheckIncarnation("E2", restored.Bound(), vv); !errors.Is(err, ErrRestoredReplica) {
		t.Fatalf("restore not detected: %v", err)
	}
	// A new incarnation E2' starts clean and its op is accepted.
	fresh := NewSeq(SeqOptions{})
	if err := CheckIncarnation("E2'", fresh.Bound(), vv); err != nil {
		t.Fatal(err)
	}
	n, _ := fresh.Next()
	again := mustApply(t, &Doc{}, Reported, `{"temp":21}`, at(2, 200, "E2'"), Dot{"E2'", n})
	receive(c, vv, again, Commit{"E2'", n})
	if got := canon(c.Visible(Reported)); got != `{"temp":21}` {
		t.Fatalf("new incarnation's write lost: %s", got)
	}
}
