package broker

import (
	"bytes"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// The pre-auth header check agrees with mochi's own decoding, whatever the
// bytes and however they are split across reads.
func FuzzFixedHeader(f *testing.F) {
	f.Add([]byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T'}, uint8(3))
	f.Add([]byte{0x10, 0x80, 0x80, 0x0c}, uint8(1))
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0xff, 0x01}, uint8(2))
	f.Add([]byte{0x30, 0x02, 0, 0}, uint8(0))
	const max = 64 << 10
	f.Fuzz(func(t *testing.T, b []byte, split uint8) {
		var whole, parts fixedHeader
		errWhole := whole.feed(b, max)
		cut := min(int(split), len(b))
		errParts := parts.feed(b[:cut], max)
		if errParts == nil {
			errParts = parts.feed(b[cut:], max)
		}
		if (errWhole == nil) != (errParts == nil) || whole != parts {
			t.Fatalf("split at %d: %+v %v, whole: %+v %v", cut, parts, errParts, whole, errWhole)
		}
		if errWhole != nil || !whole.done {
			return
		}
		n, _, err := packets.DecodeLength(bytes.NewReader(b[1:]))
		if err != nil || n != whole.length || b[0]>>4 != packets.Connect || whole.n+whole.length > max {
			t.Fatalf("accepted %x as length %d; mochi reads %d (%v)", b, whole.length, n, err)
		}
	})
}
