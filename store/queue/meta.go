package queue

import (
	"encoding/binary"

	"github.com/outpost-edge/outpost/store/kv"
)

// Key layout (all under the kv prefixes reserved for queues):
//
//	q <queue id u32> <seq u64>  message record
//	Q m <queue id u32>          queue meta (name, cursors, counters)
//	Q c                         store clock (elapsed runtime)
//
// Queue ids are small integers so message keys stay short; the name lives
// only in the meta record.
var clockKey = []byte{kv.PrefixQueueMeta, 'c'}

func metaKey(id uint32) []byte {
	return kv.AppendUint32([]byte{kv.PrefixQueueMeta, 'm'}, id)
}

func metaPrefix() []byte { return []byte{kv.PrefixQueueMeta, 'm'} }

func msgPrefix(id uint32) []byte { return kv.AppendUint32([]byte{kv.PrefixQueueMsg}, id) }

func msgKey(prefix []byte, seq uint64) []byte {
	k := make([]byte, 0, len(prefix)+8)
	return kv.AppendUint64(append(k, prefix...), seq)
}

func seqOf(key []byte) uint64 { return binary.BigEndian.Uint64(key[len(key)-8:]) }

// meta is a queue's persisted state. It is written in the same transaction
// as every append, ack and removal, so it always matches the messages on
// disk and start-up never scans the backlog.
type meta struct {
	Name     string `cbor:"1,keyasint"`
	Head     uint64 `cbor:"2,keyasint,omitempty"` // every seq below Head is gone; seeks start here
	Next     uint64 `cbor:"3,keyasint,omitempty"` // next seq to assign
	Count    int64  `cbor:"4,keyasint,omitempty"`
	Bytes    int64  `cbor:"5,keyasint,omitempty"` // sum of record sizes
	Appended uint64 `cbor:"6,keyasint,omitempty"`
	Acked    uint64 `cbor:"7,keyasint,omitempty"`
	Expired  uint64 `cbor:"8,keyasint,omitempty"`
	Dropped  uint64 `cbor:"9,keyasint,omitempty"`
	Rejected uint64 `cbor:"10,keyasint,omitempty"`
	Elapsed  int64  `cbor:"11,keyasint,omitempty"` // store elapsed clock when written
}

// clock is the persisted elapsed-runtime clock.
type clock struct {
	Elapsed int64 `cbor:"1,keyasint,omitempty"`
}
