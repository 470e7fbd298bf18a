package queue

import (
	"reflect"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/kv"
)

func FuzzDecodeRecord(f *testing.F) {
	seeds := []record{
		{},
		{ID: "m1", Body: []byte("hello")},
		{ID: "id", Source: "devices/d/modules/m", Props: map[string]string{"a": "1", "b": ""},
			Sys: map[string]string{"contentType": "application/json"}, Body: make([]byte, 300),
			TTL: int64(time.Hour), Wall: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano(), Elapsed: 1 << 40},
		{Wall: -1, Elapsed: -5, TTL: 1},
	}
	for _, r := range seeds {
		b, err := kv.Marshal(&r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0xa1, 0x01, 0x61})                   // truncated
	f.Add([]byte{0xa2, 0x01, 0x60, 0x01, 0x60})       // duplicate key
	f.Add([]byte{0xa1, 0x18, 0x63, 0x00})             // unknown field
	f.Add([]byte{0xbf, 0x01, 0x60, 0xff})             // indefinite map
	f.Add([]byte{0xa1, 0x05, 0x5a, 0xff, 0xff, 0xff}) // huge byte string length
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeRecord(data)
		if err != nil {
			return
		}
		// What decodes must survive a store round trip unchanged.
		r := record{ID: m.ID, Source: m.Source, Props: m.Props, Sys: m.Sys, Body: m.Body, TTL: int64(m.TTL)}
		if !m.EnqueuedAt.IsZero() {
			r.Wall = m.EnqueuedAt.UnixNano()
		}
		b, err := kv.Marshal(&r)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", m, err)
		}
		m2, err := DecodeRecord(b)
		if err != nil {
			t.Fatalf("decode of re-encoded record: %v", err)
		}
		if !reflect.DeepEqual(normal(m), normal(m2)) {
			t.Fatalf("round trip changed %+v into %+v", m, m2)
		}
	})
}

// normal maps empty to nil: omitempty does not keep the difference.
func normal(m Message) Message {
	if len(m.Props) == 0 {
		m.Props = nil
	}
	if len(m.Sys) == 0 {
		m.Sys = nil
	}
	if len(m.Body) == 0 {
		m.Body = nil
	}
	return m
}
