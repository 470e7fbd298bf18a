package protocol

import (
	"encoding/hex"
	"testing"
)

// TestDigestPinned: the digest of a fixed message never changes. The hub
// recognises a retransmitted batch by it, across upgrades of either side;
// if this test fails, the encoding of a Message changed, and an upgrade
// would store a batch in flight twice.
func TestDigestPinned(t *testing.T) {
	m := Message{Seq: 7, ID: "m-1", Source: "devices/d1", Props: map[string]string{"b": "2", "a": "1"},
		Sys: map[string]string{"$.ct": "application/json"}, Body: []byte(`{"t":21.5}`), EnqueuedAt: 1764806400000}
	d, err := Digest(m)
	if err != nil {
		t.Fatal(err)
	}
	const want = "1365d5d3bca4138c829f264fa274302c"
	if got := hex.EncodeToString(d); got != want {
		t.Fatalf("digest %s, want %s", got, want)
	}
	m.Body = []byte(`{"t":21.6}`)
	if d2, _ := Digest(m); hex.EncodeToString(d2) == hex.EncodeToString(d) {
		t.Fatal("another body gives the same digest")
	}
}
