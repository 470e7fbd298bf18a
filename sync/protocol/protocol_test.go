package protocol

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/identity"
)

func TestRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("reading "), 400) // compressed
	frames := []struct{ in, out any }{
		{&Hello{Version: Version, Instance: "edge:gw1.abc"}, &Hello{}},
		{&Welcome{Version: 1, Cursors: map[string]uint64{"$upstream/pdefault": 7}, TwinVV: crdt.VV{"hub.x": 3}, HubTime: 1, Hub: "hub.x"}, &Welcome{}},
		{&Messages{Instance: "i", Queue: "q", Msgs: []Message{{Seq: 1, ID: "m1", Source: "devices/d", Props: map[string]string{"a": "b"}, Body: big, EnqueuedAt: 5}}}, &Messages{}},
		{&MessagesAck{UpTo: 9, Appended: 6, Duplicates: 1, Collisions: 2, Refused: 1}, &MessagesAck{}},
		{&TwinsUp{Instance: "edge:gw1.abc", Generations: Generations{"d": "638347591827834567"}}, &TwinsUp{}},
		{&Push{HasScope: true, Scope: "s", Identities: []Identity{{DeviceID: "d", Status: identity.Enabled, Generation: "1"}},
			TwinVV: crdt.VV{"hub.x": 3, "edge:gw1.abc": 9}, Generations: Generations{"d": "1"},
			C2D: []C2D{{Device: "d", Seq: 2, Body: []byte("x")}}, Methods: []MethodCall{{ID: "1", Target: "d/m", Name: "reboot", TimeoutMs: 1000}}}, &Push{}},
		{&MethodResult{ID: "1", Status: 200, Payload: []byte(`{"ok":true}`)}, &MethodResult{}},
		{&TwinsAck{TwinVV: crdt.VV{"hub.x": 3}, Hub: "hub.x"}, &TwinsAck{}},
	}
	for _, f := range frames {
		body, enc, err := Encode(f.in)
		if err != nil {
			t.Fatal(err)
		}
		if err := Decode(bytes.NewReader(body), enc, f.out); err != nil {
			t.Fatalf("%T: %v", f.in, err)
		}
		if !reflect.DeepEqual(f.in, f.out) {
			t.Errorf("%T: got %+v, want %+v", f.in, f.out, f.in)
		}
	}
	body, enc, _ := Encode(frames[2].in)
	if enc != "gzip" || len(body) > len(big)/4 {
		t.Errorf("a 3 KB repetitive frame: encoding %q, %d bytes; want gzip and much smaller", enc, len(body))
	}
}

func TestDecodeRefuses(t *testing.T) {
	for name, c := range map[string]struct {
		body []byte
		enc  string
	}{
		"garbage":        {[]byte{0xff, 0x00}, ""},
		"trailing bytes": {append(mustEncode(t, &Hello{Version: 1}), 0x01), ""},
		"unknown field":  {[]byte{0xa1, 0x18, 0x63, 0x01}, ""},
		"not gzip":       {[]byte("plain"), "gzip"},
		"unknown coding": {mustEncode(t, &Hello{}), "br"},
	} {
		var h Hello
		if err := Decode(bytes.NewReader(c.body), c.enc, &h); !errors.Is(err, ErrFrame) {
			t.Errorf("%s: err %v, want ErrFrame", name, err)
		}
	}
}

func TestDecodeCapsGzipBomb(t *testing.T) {
	zeros := strings.Repeat("\x00", MaxFrame+10)
	body, enc, err := Encode(&Message{Body: []byte(zeros)})
	if err != nil || enc != "gzip" {
		t.Fatal(err, enc)
	}
	var m Message
	if err := Decode(bytes.NewReader(body), enc, &m); !errors.Is(err, ErrFrame) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err %v, want a size refusal", err)
	}
}

func mustEncode(t *testing.T, v any) []byte {
	data, _, err := Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// FuzzDecode: no input (seeded with the golden frames) makes a frame decoder panic or accept trailing junk
// silently; what decodes re-encodes and decodes to the same value.
func FuzzDecode(f *testing.F) {
	for _, v := range []any{
		&Hello{Version: 1, Instance: "edge:gw1.x"},
		&Messages{Instance: "i", Queue: "q", Msgs: []Message{{Seq: 1, Source: "devices/d", Body: []byte("{}")}}},
		// Devices reuse message ids; the edge's sequence numbers tell them apart.
		&Messages{Instance: "edge:gw.1.a1", Queue: "$upstream/pdefault", Msgs: []Message{
			{Seq: 1, ID: "1", Source: "devices/d", Body: []byte("a"), EnqueuedAt: 1},
			{Seq: 2, ID: "1", Source: "devices/d", Sys: map[string]string{"$.ct": "application/json"}, Body: []byte("b"), EnqueuedAt: 2}}},
		&MessagesAck{UpTo: 7, Appended: 3, Duplicates: 2, Collisions: 2},
		&Welcome{Version: 1, Cursors: map[string]uint64{"$upstream/pdefault": 7}, TwinVV: crdt.VV{"edge:gw.1.a1": 2}, HubTime: 1},
		&Pull{Instance: "i", TwinVV: crdt.VV{"hub.a": 1}, C2D: map[string]uint64{"d": 1}},
		&Push{HasScope: true, Identities: []Identity{{DeviceID: "d"}}},
		&Push{Identities: []Identity{{DeviceID: "d", Generation: "7"}}, TwinVV: crdt.VV{"hub.a": 2}, Generations: Generations{"d": "7", "d/m": "8"}},
		&TwinsUp{Instance: "i"},
		&TwinsUp{Instance: "i", Generations: Generations{"d": "7"}},
	} {
		data, _, _ := Encode(v)
		f.Add(data)
	}
	// The golden frames set every field: identities with keys and
	// thumbprints, twin batches with every kind of register.
	golden, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.cbor"))
	for _, path := range golden {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, mk := range []func() any{
			func() any { return &Hello{} }, func() any { return &Messages{} }, func() any { return &Pull{} },
			func() any { return &Push{} }, func() any { return &TwinsUp{} }, func() any { return &MethodResult{} },
			func() any { return &MessagesAck{} }, func() any { return &Welcome{} }, func() any { return &TwinsAck{} },
		} {
			v := mk()
			if DecodeBytes(data, v) != nil {
				continue
			}
			again, err := encodeRaw(v)
			if err != nil {
				t.Fatalf("%T decoded but does not encode: %v", v, err)
			}
			w := mk()
			if err := DecodeBytes(again, w); err != nil {
				t.Fatalf("%T: re-encoded frame does not decode: %v", v, err)
			}
		}
	})
}
