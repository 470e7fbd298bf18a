package kv

import "encoding/binary"

// Key prefixes: one byte per record family, so families never interleave and
// each can be scanned or dropped on its own. Store packages own the layout
// after their prefix.
const (
	PrefixMeta       byte = 'm' // store metadata: format version, incarnation, clock bounds
	PrefixQueueMsg   byte = 'q' // queue messages: q <queue id u32> <seq u64>
	PrefixQueueMeta  byte = 'Q' // queue names, cursors, counters
	PrefixTwin       byte = 't' // twin registers and twin metadata
	PrefixDot        byte = 'd' // dot index of the twin CRDT: d <origin> 0 <seq u64>
	PrefixIdentity   byte = 'i' // identity cache (issue 3)
	PrefixDeployment byte = 'p' // deployment cache (issue 5)
	PrefixEvent      byte = 'e' // hub event log: e <seq u64>
	PrefixLink       byte = 'l' // link state: hub cursors and de-duplication, edge C2D cursors
	PrefixMQTT       byte = 'M' // MQTT session state of local clients (store/mqttstate)
)

// Key builds prefix + parts. String parts are written as they are; callers
// that need unambiguous boundaries use AppendString.
func Key(prefix byte, parts ...[]byte) []byte {
	n := 1
	for _, p := range parts {
		n += len(p)
	}
	k := make([]byte, 1, n)
	k[0] = prefix
	for _, p := range parts {
		k = append(k, p...)
	}
	return k
}

// AppendUint64 appends v big-endian, so byte order equals numeric order.
func AppendUint64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

// AppendUint32 appends v big-endian.
func AppendUint32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }

// AppendString appends s and a 0 terminator; keys and ids never contain 0
// (the store packages validate that), so the result sorts and splits cleanly.
func AppendString(b []byte, s string) []byte { return append(append(b, s...), 0) }

// PrefixEnd returns the smallest key greater than every key with prefix p,
// or nil if there is none.
func PrefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}
