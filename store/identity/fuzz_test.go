package identity

import (
	"reflect"
	"testing"

	"github.com/outpost-edge/outpost/store/kv"
)

func FuzzDecodeIdentity(f *testing.F) {
	seeds := []Identity{
		dev("d"),
		mod("gw1", "$edgeHub"),
		{DeviceID: "gw1", Status: Enabled, Edge: true, DeviceScope: edgeScope, ParentScopes: []string{"ms-azure-iot-edge://p-1"},
			Auth: Auth{Type: AuthSAS, PrimaryKey: make([]byte, 32), SecondaryKey: make([]byte, 32)}},
		{DeviceID: "x", Status: Disabled, Auth: Auth{Type: AuthSelfSigned, PrimaryThumbprint: "0123456789abcdef0123456789abcdef01234567"}},
		{DeviceID: "ca", Status: Enabled, Auth: Auth{Type: AuthCA}, Generation: NewGeneration()},
		{},
	}
	for _, id := range seeds {
		b, err := kv.Marshal(&id)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0xa1, 0x01, 0x61})                   // truncated
	f.Add([]byte{0xa2, 0x01, 0x61, 0x64, 0x01, 0x60}) // duplicate key
	f.Add([]byte{0xa1, 0x18, 0x63, 0x00})             // unknown field
	f.Add([]byte{0xbf, 0x01, 0x61, 0x64, 0xff})       // indefinite map
	f.Fuzz(func(t *testing.T, data []byte) {
		id, err := decodeIdentity(data)
		if err != nil {
			return
		}
		if err := id.Validate(); err != nil {
			t.Fatalf("decoded an invalid identity: %v", err)
		}
		b, err := id.encode()
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeIdentity(b)
		if err != nil {
			t.Fatalf("re-encoded identity does not decode: %v", err)
		}
		if !reflect.DeepEqual(norm(again), norm(id)) {
			t.Fatalf("round trip: %+v != %+v", again, id)
		}
	})
}

// norm maps empty slices to nil: omitempty does not keep the difference.
func norm(id Identity) Identity {
	if len(id.ParentScopes) == 0 {
		id.ParentScopes = nil
	}
	if len(id.Auth.PrimaryKey) == 0 {
		id.Auth.PrimaryKey = nil
	}
	if len(id.Auth.SecondaryKey) == 0 {
		id.Auth.SecondaryKey = nil
	}
	return id
}
