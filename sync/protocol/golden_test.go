package protocol

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/twin"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.cbor from today's encoding (only for a deliberate, versioned change of the wire)")

// goldenFrames is one of every frame of the link with every field set.
// The bytes of their uncompressed encoding are the wire format; they are
// pinned in testdata/golden (gzip's output is not: any gzip stream reads).
func goldenFrames() map[string]struct{ in, out any } {
	vv := crdt.VV{"hub.x": 12, "edge:gw1.a1": 9}
	gens := Generations{"dev1": "638347591827834567", "gw1/m": "638347591827834999"}
	return map[string]struct{ in, out any }{
		"hello": {&Hello{Version: Version, Instance: "edge:gw1.a1"}, &Hello{}},
		"welcome": {&Welcome{Version: Version, Cursors: map[string]uint64{"$upstream/pdefault": 7, "$upstream/pbulk": 2},
			TwinVV: vv, HubTime: 1764900000123, Hub: "hub.x"}, &Welcome{}},
		"message": {ptr(goldenMessage(1)), &Message{}},
		// Carried through nested edges: a message of a leaf under gw3, sent by its parent.
		"message_nested": {ptr(func() Message { m := goldenMessage(3); m.EdgePath = []string{"gw3"}; return m }()), &Message{}},
		"messages": {&Messages{Instance: "edge:gw1.a1", Queue: "$upstream/pdefault",
			Msgs: []Message{goldenMessage(1), goldenMessage(2)}}, &Messages{}},
		"messages_ack": {&MessagesAck{UpTo: 9, Appended: 6, Duplicates: 1, Collisions: 2, Refused: 1}, &MessagesAck{}},
		"twins_up":     {&TwinsUp{Instance: "edge:gw1.a1", Batch: goldenBatch(), Generations: gens}, &TwinsUp{}},
		"twins_ack":    {&TwinsAck{TwinVV: vv, Hub: "hub.x"}, &TwinsAck{}},
		"pull": {&Pull{Instance: "edge:gw1.a1", TwinVV: vv, Scope: "c0ffee", C2D: map[string]uint64{"dev1": 4, "dev2": 1},
			WaitMs: 25000, Hub: "hub.x", Backlog: 42}, &Pull{}},
		"pull_nested": {&Pull{Instance: "edge:l4.a1", Children: []ChildStatus{{Edge: "l3", Parent: "l4", LastSeen: 1764900000456, Backlog: 12},
			{Edge: "l2", Parent: "l3", LastSeen: 1764900000400}}}, &Pull{}},
		"presence": {&PresenceReport{Instance: "edge:gw1.a1", Presence: []Presence{{ID: "dev2", Connected: true, Since: 1764900000000}}}, &PresenceReport{}},
		"pull_presence": {&Pull{Instance: "edge:gw1.a1", PresenceFull: true, Presence: []Presence{
			{ID: "dev1", Connected: true, Since: 1764900000000, Activity: 1764900060000}, {ID: "gw1/mod", Since: 1764900000100}}}, &Pull{}},
		"push": {&Push{Twins: goldenBatch(), TwinsMore: true, HasScope: true, Scope: "c0ffee",
			Identities: IdentitiesFromStore(goldenIdentities()), C2D: []C2D{goldenC2D()}, Methods: []MethodCall{goldenMethod()},
			Hub: "hub.x", TwinVV: vv, Generations: gens}, &Push{}},
		"c2d":           {ptr(goldenC2D()), &C2D{}},
		"method_call":   {ptr(goldenMethod()), &MethodCall{}},
		"method_result": {&MethodResult{ID: "m-17", Status: 504, Payload: []byte(`{"late":true}`), Error: "module did not answer in 30 s"}, &MethodResult{}},
	}
}

func ptr[T any](v T) *T { return &v }

func goldenMessage(seq uint64) Message {
	return Message{Seq: seq, ID: "msg-1", Source: "devices/dev1/modules/m",
		Props: map[string]string{"alert": "high", "unit": "C"},
		Sys:   map[string]string{"$.ct": "application/json", SysGeneration: "638347591827834567"},
		Body:  []byte(`{"temp":21.5}`), EnqueuedAt: 1764900000000 + int64(seq)}
}

func goldenC2D() C2D {
	return C2D{Device: "dev1", Seq: 4, ID: "c2d-4", Props: map[string]string{"cmd": "blink"},
		Sys: map[string]string{"$.ct": "application/json"}, Body: []byte(`{"n":3}`), EnqueuedAt: 1764900000500}
}

func goldenMethod() MethodCall {
	return MethodCall{ID: "m-17", Target: "dev1/m", Name: "reboot", Payload: []byte(`{"delay":5}`), TimeoutMs: 30000}
}

// goldenIdentities: an edge device with SAS keys, a self-signed leaf with
// thumbprints, and a disabled module.
func goldenIdentities() []identity.Identity {
	return []identity.Identity{
		{DeviceID: "gw1", Status: identity.Enabled, Edge: true, DeviceScope: "ms-azure-iot-edge://gw1-637",
			ParentScopes: []string{"ms-azure-iot-edge://gw0-111"}, Generation: "638347591827834000",
			Auth: identity.Auth{Type: identity.AuthSAS, PrimaryKey: []byte("primary-key-32-bytes-long-------"),
				SecondaryKey: []byte("secondary-key-32-bytes-long-----")}},
		{DeviceID: "dev1", Status: identity.Enabled, ParentScopes: []string{"ms-azure-iot-edge://gw1-637"}, Generation: "638347591827834567",
			Auth: identity.Auth{Type: identity.AuthSelfSigned,
				PrimaryThumbprint:   "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
				SecondaryThumbprint: "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"}},
		{DeviceID: "gw1", ModuleID: "m", Status: identity.Disabled, Generation: "638347591827834999",
			Auth: identity.Auth{Type: identity.AuthSAS, PrimaryKey: []byte{1, 2, 3}, SecondaryKey: []byte{4, 5, 6}}},
	}
}

// goldenBatch has registers of every kind in every section: scalar and
// object writes (the object's write and clear travel as one entry), a
// tombstone, a clear alone, a reported write with a session, an overlay
// write with its basis, and commits.
func goldenBatch() twin.Batch {
	hub, edge := crdt.ReplicaID("hub.x"), crdt.ReplicaID("edge:gw1.a1")
	key := func(wall int64, o crdt.ReplicaID) crdt.Key {
		return crdt.Key{TS: crdt.HLC{Wall: wall, Logical: 1}, Origin: o}
	}
	objK, objD := key(1764900000200, hub), crdt.Dot{Origin: hub, Seq: 2}
	return twin.Batch{
		Twins: []twin.TwinDelta{{ID: "dev1", CloudDesired: 7, Fields: []crdt.Field{
			{Section: crdt.Desired, Path: crdt.Path{"temp"}, W: crdt.Write{K: key(1764900000100, hub), D: crdt.Dot{Origin: hub, Seq: 1}, Kind: crdt.Val, Value: []byte("21")}},
			{Section: crdt.Desired, Path: crdt.Path{"mode"}, W: crdt.Write{K: objK, D: objD, Kind: crdt.Obj}},
			{Section: crdt.Desired, Path: crdt.Path{"mode"}, IsClear: true, C: crdt.Clear{K: objK, D: objD}},
			{Section: crdt.Desired, Path: crdt.Path{"old"}, IsClear: true, C: crdt.Clear{K: key(1764900000300, hub), D: crdt.Dot{Origin: hub, Seq: 3}}},
			{Section: crdt.Tags, Path: crdt.Path{"site"}, W: crdt.Write{K: key(1764900000400, hub), D: crdt.Dot{Origin: hub, Seq: 4}, Kind: crdt.Del}},
			{Section: crdt.Reported, Path: crdt.Path{"fw", "version"}, W: crdt.Write{
				K: crdt.Key{Session: crdt.HLC{Wall: 1764900000050, Logical: 2}, TS: crdt.HLC{Wall: 1764900000500}, Origin: edge},
				D: crdt.Dot{Origin: edge, Seq: 1}, Kind: crdt.Val, Value: []byte(`"1.2.3"`)}},
		}}, {ID: "gw1/m", Fields: []crdt.Field{
			{Section: crdt.Overlay, Path: crdt.Path{"interval"}, W: crdt.Write{K: key(1764900000600, edge), D: crdt.Dot{Origin: edge, Seq: 2},
				Kind: crdt.Val, Value: []byte("30"), Basis: key(1764900000100, hub)}},
		}}},
		Commits: []crdt.Commit{{Origin: hub, UpTo: 4}, {Origin: edge, UpTo: 2}},
	}
}

// TestGolden pins the wire: every frame encodes to the bytes in
// testdata/golden, and those bytes decode to the frame. A failure means
// the wire format changed (a type of the link or of a record it carries);
// run with -update only for a deliberate change of the protocol version.
func TestGolden(t *testing.T) {
	for name, f := range goldenFrames() {
		path := filepath.Join("testdata", "golden", name+".cbor")
		got, err := encodeRaw(f.in)
		if err != nil {
			t.Fatalf("%s: encode: %v", name, err)
		}
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v (run go test -run Golden -update to write it)", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the wire encoding changed:\n got %s\nwant %s", name, hex.EncodeToString(got), hex.EncodeToString(want))
		}
		if err := DecodeBytes(want, f.out); err != nil {
			t.Fatalf("%s: golden bytes do not decode: %v", name, err)
		}
		if !reflect.DeepEqual(f.out, f.in) {
			t.Errorf("%s: golden bytes decode to\n%+v\nwant\n%+v", name, f.out, f.in)
		}
	}
}

// TestGoldenThroughEncode: the framing (gzip above CompressAbove) carries
// the same bytes.
func TestGoldenThroughEncode(t *testing.T) {
	for name, f := range goldenFrames() {
		body, enc, err := Encode(f.in)
		if err != nil {
			t.Fatal(err)
		}
		out := reflect.New(reflect.TypeOf(f.out).Elem()).Interface()
		if err := Decode(bytes.NewReader(body), enc, out); err != nil {
			t.Fatalf("%s (%q): %v", name, enc, err)
		}
		if !reflect.DeepEqual(out, f.in) {
			t.Errorf("%s (%q): decodes to %+v", name, enc, out)
		}
	}
}

// TestGoldenSetsEveryField keeps TestGolden's promise that the golden
// frames set every field of the link's own types (in at least one value):
// a field added to a frame and left out of goldenFrames would encode to
// nothing (omitempty) and its CBOR key would go unpinned. Types of other
// packages (twin.Batch, crdt.VV) are pinned by what goldenBatch sets.
func TestGoldenSetsEveryField(t *testing.T) {
	pkg := reflect.TypeOf(Hello{}).PkgPath()
	set := map[string]bool{} // "Type.Field" → set in some golden value
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer:
			walk(v.Elem())
		case reflect.Slice:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		case reflect.Struct:
			if v.Type().PkgPath() != pkg {
				return
			}
			for i := range v.NumField() {
				f := v.Type().Field(i)
				if !f.IsExported() {
					continue
				}
				key := v.Type().Name() + "." + f.Name
				set[key] = set[key] || !v.Field(i).IsZero()
				walk(v.Field(i))
			}
		}
	}
	for _, f := range goldenFrames() {
		walk(reflect.ValueOf(f.in))
	}
	for key, ok := range set {
		if !ok {
			t.Errorf("%s is not set in any golden frame: TestGolden does not pin its CBOR key", key)
		}
	}
	if len(set) == 0 {
		t.Fatal("no field of the protocol's types reached")
	}
}
