package twin

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/kv"
)

var ctx = context.Background()

type clockT struct{ ms int64 }

func (c *clockT) now() int64 { c.ms++; return c.ms }

func openDB(t testing.TB, dir string) *kv.DB {
	t.Helper()
	o := kv.Options{InMemory: dir == ""}
	db, err := kv.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func openStore(t testing.TB, db *kv.DB, role Role, name string, clk *clockT) *Store {
	t.Helper()
	s, err := Open(ctx, db, Options{Role: role, Name: name, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustJSON(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("bad JSON %s: %v", b, err)
	}
	return m
}

func TestLocalPatchAndRender(t *testing.T) {
	clk := &clockT{ms: 1_750_000_000_000}
	s := openStore(t, openDB(t, ""), Edge, "gw1", clk)
	if _, err := s.Get("dev1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of an unknown twin: %v, want ErrNotFound", err)
	}
	if err := s.Ensure(ctx, "dev0"); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get("dev0"); err != nil || string(v.DeviceJSON()) != `{"desired":{"$version":1},"reported":{"$version":1}}` {
		t.Fatalf("a new twin: %v, %v", v, err)
	}
	sess, _ := s.BeginSession()
	v1, err := s.PatchReported(ctx, "dev1", sess, []byte(`{"temp":21.5,"fw":{"a":"1.0","b":"2.0"}}`))
	if err != nil {
		t.Fatal(err)
	}
	v2, err := s.PatchReported(ctx, "dev1", sess, []byte(`{"fw":{"a":null},"n":[1,2]}`))
	if err != nil {
		t.Fatal(err)
	}
	if v1 != 2 || v2 != 3 {
		t.Errorf("reported versions %d, %d; want 2, 3 (a new twin starts at 1)", v1, v2)
	}
	view, err := s.Get("dev1")
	if err != nil {
		t.Fatal(err)
	}
	got := mustJSON(t, view.DeviceJSON())
	want := mustJSON(t, []byte(`{"desired":{"$version":1},"reported":{"temp":21.5,"fw":{"b":"2.0"},"n":[1,2],"$version":3}}`))
	if !reflect.DeepEqual(got, want) {
		t.Errorf("device JSON\n got %v\nwant %v", got, want)
	}
	svc := mustJSON(t, view.ServiceJSON())
	md := svc["properties"].(map[string]any)["reported"].(map[string]any)["$metadata"].(map[string]any)
	fw := md["fw"].(map[string]any)
	if fw["$lastUpdated"] == nil || fw["b"].(map[string]any)["$lastUpdated"] == nil || md["$lastUpdated"] == nil {
		t.Errorf("$metadata incomplete: %v", md)
	}
	if svc["deviceId"] != "dev1" {
		t.Errorf("deviceId = %v", svc["deviceId"])
	}
}

func TestRefusalsChangeNothing(t *testing.T) {
	clk := &clockT{ms: 1_750_000_000_000}
	edge := openStore(t, openDB(t, ""), Edge, "gw1", clk)
	sess, _ := edge.BeginSession()
	if _, err := edge.PatchReported(ctx, "d", sess, []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	big := fmt.Sprintf(`{"x":"%s"}`, strings.Repeat("y", 4000))
	cases := []struct {
		name string
		do   func() error
		want error
	}{
		{"desired on the edge", func() error { _, err := edge.PatchDesired(ctx, "d", []byte(`{"a":1}`)); return err }, ErrWrongSide},
		{"bad key", func() error { _, err := edge.PatchReported(ctx, "d", sess, []byte(`{"a.b":1}`)); return err }, ErrInvalid},
		{"bad id", func() error { _, err := edge.PatchReported(ctx, "a/b/c", sess, []byte(`{"a":1}`)); return err }, ErrBadID},
		{"stale session", func() error {
			newer, _ := edge.BeginSession()
			if _, err := edge.PatchReported(ctx, "d", newer, []byte(`{"b":1}`)); err != nil {
				return err
			}
			_, err := edge.PatchReported(ctx, "d", sess, []byte(`{"a":2}`))
			return err
		}, ErrStaleSession},
		{"section over 32 KB", func() error {
			var err error
			for i := 0; i < 10 && err == nil; i++ {
				s2, _ := edge.BeginSession()
				_, err = edge.PatchReported(ctx, "big", s2, []byte(strings.Replace(big, `"x"`, fmt.Sprintf(`"x%d"`, i), 1)))
			}
			return err
		}, ErrTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, _ := edge.Get("d")
			if err := c.do(); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			after, _ := edge.Get("d")
			if c.want != ErrStaleSession && !reflect.DeepEqual(before.Reported, after.Reported) {
				t.Errorf("a refused patch changed the twin: %v → %v", before.Reported, after.Reported)
			}
		})
	}
	v, err := edge.Get("big")
	if err != nil {
		t.Fatal(err)
	}
	if n := Size(v.Reported); n > DefaultLimits.MaxSection {
		t.Errorf("reported admitted at %d bytes", n)
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	clk := &clockT{ms: 1_750_000_000_000}
	db, err := kv.Open(dir, kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := openStore(t, db, Cloud, "hub", clk)
	for i := 0; i < 5; i++ {
		if _, err := s.PatchDesired(ctx, "d/m", []byte(fmt.Sprintf(`{"k%d":%d,"o":{"x":%d}}`, i, i, i))); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := s.Get("d/m")
	vv, replica := s.VV(), s.Replica()
	db.Close()
	clk.ms -= 100_000 // the wall clock went back while we were down
	db2 := openDB(t, dir)
	s2 := openStore(t, db2, Cloud, "hub", clk)
	after, err := s2.Get("d/m")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(before.Desired, after.Desired) || before.DesiredVersion != after.DesiredVersion {
		t.Errorf("after reopen %v v%d, before %v v%d", after.Desired, after.DesiredVersion, before.Desired, before.DesiredVersion)
	}
	if s2.Replica() != replica || !reflect.DeepEqual(s2.VV(), vv) {
		t.Errorf("replica %s vv %v after reopen, want %s %v", s2.Replica(), s2.VV(), replica, vv)
	}
	// A patch after the clock went back still wins over the earlier ones.
	if _, err := s2.PatchDesired(ctx, "d/m", []byte(`{"k0":"new"}`)); err != nil {
		t.Fatal(err)
	}
	if v, _ := s2.Get("d/m"); v.Desired["k0"] != "new" {
		t.Errorf("k0 = %v after a patch following a clock jump back", v.Desired["k0"])
	}
	if ids, _ := s2.IDs(); !reflect.DeepEqual(ids, []string{"d/m"}) {
		t.Errorf("IDs = %v", ids)
	}
}

// sync exchanges deltas both ways in chunks of size until neither side has
// anything new; it returns the changes each side saw.
func syncPair(t testing.TB, a, b *Store, size int) (aCh, bCh []Change) {
	t.Helper()
	for round := 0; round < 1000; round++ {
		moved := false
		for _, dir := range []struct {
			from, to *Store
			ch       *[]Change
		}{{a, b, &bCh}, {b, a, &aCh}} {
			batch, _, err := dir.from.Delta(dir.to.VV(), size)
			if err != nil {
				t.Fatal(err)
			}
			if len(batch.Twins) == 0 && len(batch.Commits) == 0 {
				continue
			}
			moved = true
			ch, err := dir.to.ApplyDelta(ctx, roundTrip(t, batch))
			if err != nil {
				t.Fatal(err)
			}
			*dir.ch = append(*dir.ch, ch...)
		}
		if !moved {
			return
		}
	}
	t.Fatal("sync did not quiesce")
	return
}

// roundTrip sends a batch through the record codec, as the wire would.
func roundTrip(t testing.TB, b Batch) Batch {
	t.Helper()
	data, err := kv.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeBatch(data)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEdgeHubConverge(t *testing.T) {
	clk := &clockT{ms: 1_750_000_000_000}
	hub := openStore(t, openDB(t, ""), Cloud, "hub", clk)
	edge := openStore(t, openDB(t, ""), Edge, "gw1", clk)
	sess, _ := edge.BeginSession()
	for i := 0; i < 50; i++ {
		if _, err := edge.PatchReported(ctx, "dev1", sess, []byte(fmt.Sprintf(`{"temp":%d,"fw":{"v":"%d"}}`, i, i%3))); err != nil {
			t.Fatal(err)
		}
		if _, err := hub.PatchDesired(ctx, "dev1", []byte(fmt.Sprintf(`{"interval":%d,"drop":{"x":1}}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := hub.PatchDesired(ctx, "dev1", []byte(`{"drop":null}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := edge.PatchReported(ctx, "dev1", sess, []byte(`{"fw":null}`)); err != nil {
		t.Fatal(err)
	}
	edgeChanges, _ := syncPair(t, edge, hub, 3)
	hv, _ := hub.Get("dev1")
	ev, _ := edge.Get("dev1")
	if !reflect.DeepEqual(hv.Desired, ev.Desired) || !reflect.DeepEqual(hv.Reported, ev.Reported) {
		t.Fatalf("not converged:\nhub  %v %v\nedge %v %v", hv.Desired, hv.Reported, ev.Desired, ev.Reported)
	}
	if ev.Reported["fw"] != nil || ev.Desired["drop"] != nil || fmt.Sprint(ev.Desired["interval"]) != "49" {
		t.Errorf("wrong converged state: %v %v", ev.Desired, ev.Reported)
	}
	if ev.DesiredVersion != hv.DesiredVersion {
		t.Errorf("edge desired $version %d, hub %d: they must agree for PnP acks", ev.DesiredVersion, hv.DesiredVersion)
	}
	// The desired notifications the edge would send add up to the hub's desired.
	got := map[string]any{}
	for _, c := range edgeChanges {
		if c.Section == crdt.Desired {
			applyPatchT(got, c.Patch)
		}
	}
	if !reflect.DeepEqual(got, ev.Desired) {
		t.Errorf("desired notifications add up to %v, want %v", got, ev.Desired)
	}
	// Replaying everything again changes nothing.
	full, _, _ := edge.Delta(crdt.VV{}, 1<<20)
	dups := hub.Stats().Duplicates
	if ch, err := hub.ApplyDelta(ctx, full); err != nil || len(ch) != 0 {
		t.Errorf("replay: changes %v, err %v", ch, err)
	}
	if hub.Stats().Duplicates <= dups {
		t.Error("replayed fields were not counted as duplicates")
	}
}

func applyPatchT(doc, patch map[string]any) {
	for k, v := range patch {
		switch x := v.(type) {
		case nil:
			delete(doc, k)
		case map[string]any:
			sub, ok := doc[k].(map[string]any)
			if !ok {
				sub = map[string]any{}
				doc[k] = sub
			}
			applyPatchT(sub, x)
		default:
			doc[k] = v
		}
	}
}

// An edge may not write desired, the hub may not write reported: such
// fields are refused on arrival and counted.
func TestForbiddenFieldsRefused(t *testing.T) {
	clk := &clockT{ms: 1_750_000_000_000}
	hub := openStore(t, openDB(t, ""), Cloud, "hub", clk)
	edge := openStore(t, openDB(t, ""), Edge, "gw1", clk)
	sess, _ := edge.BeginSession()
	if _, err := edge.PatchReported(ctx, "d", sess, []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	b, _, _ := edge.Delta(crdt.VV{}, 100)
	for i := range b.Twins[0].Fields {
		b.Twins[0].Fields[i].Section = crdt.Desired // a hostile edge rewrites desired
	}
	if _, err := hub.ApplyDelta(ctx, b); err != nil {
		t.Fatal(err)
	}
	if v, err := hub.Get("d"); err == nil && len(v.Desired) != 0 {
		t.Errorf("hub accepted desired from an edge: %v", v.Desired)
	}
	if hub.Stats().Forbidden == 0 {
		t.Error("forbidden fields not counted")
	}
}

func TestHostileBatchesRefusedWhole(t *testing.T) {
	clk := &clockT{ms: 1_750_000_000_000}
	hub := openStore(t, openDB(t, ""), Cloud, "hub", clk)
	edge := openStore(t, openDB(t, ""), Edge, "gw1", clk)
	sess, _ := edge.BeginSession()
	if _, err := edge.PatchReported(ctx, "d", sess, []byte(`{"a":1,"b":2}`)); err != nil {
		t.Fatal(err)
	}
	good, _, _ := edge.Delta(crdt.VV{}, 100)
	mutate := map[string]func(b *Batch){
		"bad twin id": func(b *Batch) { b.Twins[0].ID = "a\x00b" },
		"bad path":    func(b *Batch) { b.Twins[0].Fields[0].Path = crdt.Path{"x y"} },
		"clock 2d ahead": func(b *Batch) {
			f := &b.Twins[0].Fields[len(b.Twins[0].Fields)-1]
			f.W.K.TS.Wall += 2 * 86_400_000
			f.C.K.TS.Wall += 2 * 86_400_000
		},
	}
	for name, m := range mutate {
		t.Run(name, func(t *testing.T) {
			b := roundTrip(t, good)
			m(&b)
			vv := hub.VV()
			if _, err := hub.ApplyDelta(ctx, b); !errors.Is(err, ErrBadDelta) {
				t.Fatalf("hostile batch: err %v, want ErrBadDelta", err)
			}
			if _, err := hub.Get("d"); !errors.Is(err, ErrNotFound) {
				t.Errorf("part of a refused batch was applied: %v", err)
			}
			if !reflect.DeepEqual(hub.VV(), vv) {
				t.Errorf("VV moved on a refused batch")
			}
		})
	}
}

// 10 000 offline updates of one property cross as a delta no bigger than
// twice the final state.
func TestDeltaCoalesces(t *testing.T) {
	clk := &clockT{ms: 1_750_000_000_000}
	edge := openStore(t, openDB(t, ""), Edge, "gw1", clk)
	hub := openStore(t, openDB(t, ""), Cloud, "hub", clk)
	sess, _ := edge.BeginSession()
	for i := 0; i < 10_000; i++ {
		if _, err := edge.PatchReported(ctx, "dev1", sess, []byte(reportedPatch(i))); err != nil {
			t.Fatal(err)
		}
	}
	b, more, err := edge.Delta(crdt.VV{}, 1<<20)
	if err != nil || more {
		t.Fatal(err, more)
	}
	v, _ := edge.Get("dev1")
	if n, regs := b.Fields(), 2*leaves(v.Reported); n > regs {
		t.Errorf("delta has %d fields for a twin of %d register fields", n, regs)
	}
	wire, _ := kv.Marshal(b)
	state, _ := json.Marshal(v.Reported)
	packed := deflate(t, wire)
	t.Logf("delta %d B of CBOR, %d B deflated as the link sends it; final state %d B of JSON", len(wire), packed, len(state))
	if packed > 2*len(state) {
		t.Errorf("delta %d B on the link, final state %d B", packed, len(state))
	}
	if _, err := hub.ApplyDelta(ctx, b); err != nil {
		t.Fatal(err)
	}
	hv, _ := hub.Get("dev1")
	if !reflect.DeepEqual(hv.Reported, v.Reported) {
		t.Errorf("hub %v, edge %v", hv.Reported, v.Reported)
	}
}

// A delta cut into chunks and interrupted anywhere resumes from the last
// commit and ends in the same state.
func TestDeltaResumesAfterTruncation(t *testing.T) {
	clk := &clockT{ms: 1_750_000_000_000}
	edge := openStore(t, openDB(t, ""), Edge, "gw1", clk)
	sess, _ := edge.BeginSession()
	for i := 0; i < 40; i++ {
		p := fmt.Sprintf(`{"k%d":%d,"o":{"p%d":true}}`, i%7, i, i%5)
		if _, err := edge.PatchReported(ctx, fmt.Sprintf("d%d", i%3), sess, []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	ref := openStore(t, openDB(t, ""), Cloud, "hub", clk)
	syncPair(t, edge, ref, 1<<20)
	for cut := 1; cut < 12; cut++ {
		hub := openStore(t, openDB(t, ""), Cloud, "hub", clk)
		// deliver only the first batch of size cut, drop the rest, then resume
		b, _, _ := edge.Delta(hub.VV(), cut)
		if _, err := hub.ApplyDelta(ctx, b); err != nil {
			t.Fatal(err)
		}
		syncPair(t, edge, hub, cut)
		for _, id := range []string{"d0", "d1", "d2"} {
			a, _ := ref.Get(id)
			h, _ := hub.Get(id)
			if !reflect.DeepEqual(a.Reported, h.Reported) {
				t.Fatalf("cut %d: %s = %v, want %v", cut, id, h.Reported, a.Reported)
			}
		}
	}
}

func TestGCDropsStableTombstones(t *testing.T) {
	dir := t.TempDir()
	clk := &clockT{ms: 1_750_000_000_000}
	edge := openStore(t, openDB(t, dir), Edge, "gw1", clk)
	hub := openStore(t, openDB(t, ""), Cloud, "hub", clk)
	sess, _ := edge.BeginSession()
	edge.PatchReported(ctx, "d", sess, []byte(`{"temp":20,"keep":1}`))
	stale, _, _ := edge.Delta(crdt.VV{}, 100)
	edge.PatchReported(ctx, "d", sess, []byte(`{"temp":null}`))
	syncPair(t, edge, hub, 100)
	// Nothing is stable before the other member has acknowledged.
	if n, err := hub.GC(ctx, func(string) []string { return []string{"gw1"} }, 100); err != nil || n != 0 {
		t.Fatalf("hub GC without an ack from the edge removed %d, err %v", n, err)
	}
	acks(t, edge, hub)
	n, err := hub.GC(ctx, func(string) []string { return []string{"gw1"} }, 100)
	if err != nil || n == 0 {
		t.Fatalf("hub GC removed %d, err %v", n, err)
	}
	if _, err := edge.GC(ctx, func(string) []string { return []string{"hub"} }, 100); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Store{edge, hub} {
		if n, _ := s.Tombstones("d"); n != 0 {
			t.Errorf("%s: %d tombstones left", s.Replica(), n)
		}
	}
	// The stale batch from before the delete arrives again: no resurrection.
	if _, err := hub.ApplyDelta(ctx, stale); err != nil {
		t.Fatal(err)
	}
	if v, _ := hub.Get("d"); v.Reported["temp"] != nil || fmt.Sprint(v.Reported["keep"]) != "1" {
		t.Errorf("after GC and a stale replay: %v", v.Reported)
	}
}

func TestDiff(t *testing.T) {
	old := map[string]any{"a": 1.0, "b": map[string]any{"c": 1.0, "d": 2.0}, "e": "x", "f": []any{1.0}}
	new := map[string]any{"a": 1.0, "b": map[string]any{"c": 3.0}, "f": []any{1.0, 2.0}, "g": map[string]any{}}
	got := Diff(old, new)
	want := map[string]any{"b": map[string]any{"c": 3.0, "d": nil}, "e": nil, "f": []any{1.0, 2.0}, "g": map[string]any{}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Diff = %v, want %v", got, want)
	}
	if d := Diff(new, new); len(d) != 0 {
		t.Errorf("Diff of equal docs = %v", d)
	}
}

// reportedPatch is patch i of a gateway-like device reporting three of its
// sixteen properties at a time.
func reportedPatch(i int) string {
	all := []string{
		fmt.Sprintf(`"batteryLevel":%d`, 100-i%100),
		fmt.Sprintf(`"firmware":{"version":"1.4.%d","slot":"%c"}`, i%10, 'A'+i%2),
		fmt.Sprintf(`"network":{"rssi":%d,"ssid":"plant-3-line-%d"}`, -40-i%50, i%4),
		fmt.Sprintf(`"temperature":%d.%d`, 20+i%15, i%10),
		fmt.Sprintf(`"humidity":%d`, 30+i%40),
		fmt.Sprintf(`"uptimeSeconds":%d`, i*60),
		fmt.Sprintf(`"status":"%s"`, []string{"running", "degraded", "updating"}[i%3]),
		fmt.Sprintf(`"location":{"lat":52.%04d,"lon":13.%04d}`, i%9999, (i*7)%9999),
		fmt.Sprintf(`"lastError":"code %d at step %d"`, i%17, i%5),
		fmt.Sprintf(`"config":{"interval":%d,"mode":"m%d","ack":%d}`, 5+i%10, i%3, i),
	}
	parts := []string{all[i%len(all)], all[(i+3)%len(all)], all[(i+7)%len(all)]}
	return "{" + strings.Join(parts, ",") + "}"
}

func leaves(doc map[string]any) int {
	n := 0
	for _, v := range doc {
		if m, ok := v.(map[string]any); ok {
			n += 1 + leaves(m)
		} else {
			n++
		}
	}
	return n
}

// deflate returns the compressed size of b: frames on the link are
// compressed (docs/protocol.md), so that is what crosses it.
func deflate(t testing.TB, b []byte) int {
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	w.Close()
	return buf.Len()
}

// An edge's device id may contain '.' (IoT Hub allows it): the replica id
// splits at its last '.', and an edge "gw" does not own "gw.1"'s replicas.
func TestEdgeNameWithDot(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	clk := &clockT{ms: 1_750_000_000_000}
	s := openStore(t, db, Edge, "gw.1", clk)
	r := s.Replica()
	if !strings.HasPrefix(string(r), "edge:gw.1.") || !IsEdgeReplica(r, "gw.1") || IsEdgeReplica(r, "gw") {
		t.Fatalf("replica %q: IsEdgeReplica(gw.1) %v, (gw) %v", r, IsEdgeReplica(r, "gw.1"), IsEdgeReplica(r, "gw"))
	}
	if again := openStore(t, db, Edge, "gw.1", clk); again.Replica() != r {
		t.Fatalf("reopened as %q, was %q", again.Replica(), r)
	}
	if other := openStore(t, db, Edge, "gw", clk); other.Replica() == r || !IsEdgeReplica(other.Replica(), "gw") {
		t.Fatalf("opened as gw: %q (gw.1's was %q)", other.Replica(), r)
	}
	for _, c := range []struct {
		id     crdt.ReplicaID
		device string
		want   bool
	}{
		{"edge:gw.1.a1b2", "gw.1", true}, {"edge:gw.1.a1b2", "gw", false}, {"edge:gw.a1b2", "gw", true},
		{"edge:gw.", "gw", false}, {"edge:gw", "gw", false}, {"edge:gw.x-y", "gw", false}, {"hub.a1", "gw", false},
	} {
		if got := IsEdgeReplica(c.id, c.device); got != c.want {
			t.Errorf("IsEdgeReplica(%q, %q) = %v, want %v", c.id, c.device, got, c.want)
		}
	}
}

// A store opened on another machine than the one it recorded (a copied data
// directory) takes a new replica id and keeps its twins and version vector;
// its old id's writes are still in its deltas, and it never writes under
// the old id again.
func TestMovedToAnotherMachine(t *testing.T) {
	dir := t.TempDir()
	clk := &clockT{ms: 1_750_000_000_000}
	open := func(db *kv.DB, machine string) *Store {
		t.Helper()
		s, err := Open(ctx, db, Options{Role: Edge, Name: "gw1", Machine: machine, Now: clk.now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	patch := func(s *Store, doc string) {
		t.Helper()
		sess, err := s.BeginSession()
		if err == nil {
			_, err = s.PatchReported(ctx, "dev1", sess, []byte(doc))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	db, err := kv.Open(dir, kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := open(db, "m1")
	patch(s, `{"a":1}`)
	old := s.Replica()
	if open(db, "m1").Replica() != old || open(db, "").Replica() != old {
		t.Fatal("the same machine (or an unknown one) changed the replica id")
	}
	db.Close()

	db2 := openDB(t, dir)
	moved := open(db2, "m2")
	if moved.Replica() == old || !IsEdgeReplica(moved.Replica(), "gw1") {
		t.Fatalf("on another machine the replica is %q (was %q)", moved.Replica(), old)
	}
	if vv := moved.VV(); vv[old] != 1 {
		t.Fatalf("version vector %v lost the old incarnation's writes", vv)
	}
	patch(moved, `{"b":2}`)
	v, err := moved.Get("dev1")
	if err != nil || fmt.Sprintf("%v %v", v.Reported["a"], v.Reported["b"]) != "1 2" {
		t.Fatalf("twin after the move: %+v %v", v.Reported, err)
	}
	vv := moved.VV()
	if vv[old] != 1 || vv[moved.Replica()] != 1 {
		t.Fatalf("version vector %v: want the old id at 1 and the new at 1", vv)
	}
	b, _, err := moved.Delta(crdt.VV{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	origins := map[crdt.ReplicaID]bool{}
	for _, td := range b.Twins {
		for _, f := range td.Fields {
			origins[f.Key().Origin] = true
		}
	}
	if !origins[old] || !origins[moved.Replica()] {
		t.Fatalf("delta origins %v: want both incarnations", origins)
	}
	if again := open(db2, "m2"); again.Replica() != moved.Replica() {
		t.Fatalf("reopened on the new machine as %q, want %q", again.Replica(), moved.Replica())
	}
}

// TestIDsSkipsRegisters: IDs seeks from twin to twin; ids that are
// prefixes of others ("d", "d/m", "d2") and twins with many registers are
// each listed once, in order.
func TestIDsSkipsRegisters(t *testing.T) {
	s := openStore(t, openDB(t, t.TempDir()), Cloud, "hub", &clockT{ms: 1_700_000_000_000})
	for _, id := range []string{"d2", "d/m", "d", "e"} {
		if _, err := s.PatchDesired(ctx, id, []byte(`{"a":1,"b":{"c":2},"z":3}`)); err != nil {
			t.Fatal(err)
		}
	}
	ids, err := s.IDs()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"d", "d/m", "d2", "e"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("IDs = %v, want %v", ids, want)
	}
}

// TestUnwrittenSectionHasNoLastUpdated: a section never written shows no
// $lastUpdated (it read 1970-01-01T00:00:00.000Z); a written one does.
func TestUnwrittenSectionHasNoLastUpdated(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, openDB(t, ""), Edge, "gw1", &clockT{ms: 1_750_000_000_000})
	sess, _ := s.BeginSession()
	if _, err := s.PatchReported(ctx, "dev1", sess, []byte(`{"temp":21.5}`)); err != nil {
		t.Fatal(err)
	}
	view, err := s.Get("dev1")
	if err != nil {
		t.Fatal(err)
	}
	svc := view.ServiceJSON()
	if strings.Contains(string(svc), "1970") {
		t.Errorf("service JSON shows 1970: %s", svc)
	}
	props := mustJSON(t, svc)["properties"].(map[string]any)
	desired := props["desired"].(map[string]any)["$metadata"].(map[string]any)
	reported := props["reported"].(map[string]any)["$metadata"].(map[string]any)
	if _, ok := desired["$lastUpdated"]; ok {
		t.Errorf("unwritten desired section: $metadata %v, want no $lastUpdated", desired)
	}
	if lu, _ := reported["$lastUpdated"].(string); !strings.HasPrefix(lu, "2025-06-15T") {
		t.Errorf("written reported section: $metadata %v, want its time", reported)
	}
}
