package kv

import (
	"bytes"
	"testing"
)

type sample struct {
	Name string            `cbor:"1,keyasint,omitempty"`
	Seq  uint64            `cbor:"2,keyasint,omitempty"`
	Tags map[string]string `cbor:"3,keyasint,omitempty"`
	Body []byte            `cbor:"4,keyasint,omitempty"`
}

func TestCodecDeterministic(t *testing.T) {
	v := sample{Name: "n", Seq: 7, Tags: map[string]string{"b": "2", "a": "1", "aa": "3"}, Body: []byte{1}}
	a, err := Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		b, _ := Marshal(v)
		if !bytes.Equal(a, b) {
			t.Fatal("two encodings of the same value differ")
		}
	}
	var back sample
	if err := Unmarshal(a, &back); err != nil {
		t.Fatal(err)
	}
	if back.Name != v.Name || back.Seq != v.Seq || len(back.Tags) != 3 || !bytes.Equal(back.Body, v.Body) {
		t.Errorf("round trip: %+v", back)
	}
}

func TestCodecRejectsHostileInput(t *testing.T) {
	cases := map[string][]byte{
		"duplicate key":     {0xa2, 0x01, 0x61, 'a', 0x01, 0x61, 'b'},
		"unknown field":     {0xa1, 0x09, 0x01},
		"indefinite length": {0xbf, 0x01, 0x61, 'a', 0xff},
		"tag":               {0xa1, 0x01, 0xc1, 0x01},
		"trailing bytes":    {0xa1, 0x01, 0x61, 'a', 0x00},
		"truncated":         {0xa1, 0x01, 0x62, 'a'},
		"huge length":       {0xa1, 0x04, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"invalid utf8":      {0xa1, 0x01, 0x61, 0xff},
	}
	for name, in := range cases {
		var s sample
		if err := Unmarshal(in, &s); err == nil {
			t.Errorf("%s: accepted %x as %+v", name, in, s)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	good, _ := Marshal(sample{Name: "x", Seq: 1, Tags: map[string]string{"k": "v"}, Body: []byte("b")})
	f.Add(good)
	f.Add([]byte{0xa1, 0x01, 0x61, 'a'})
	f.Add([]byte{0xbf, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		var s sample
		if err := Unmarshal(data, &s); err != nil {
			return
		}
		// Whatever decodes must re-encode and decode to the same value.
		again, err := Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var s2 sample
		if err := Unmarshal(again, &s2); err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		a2, _ := Marshal(s2)
		if !bytes.Equal(again, a2) {
			t.Fatal("encoding is not stable")
		}
	})
}
