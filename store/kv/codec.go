package kv

import (
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Every record on disk (and every frame on the wire, through sync/protocol)
// is deterministic CBOR: the same value always encodes to the same bytes.
var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	if encMode, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic(err) // static options; cannot fail
	}
	dec := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:   24,
		MaxArrayElements:  1 << 20,
		MaxMapPairs:       1 << 16,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		UTF8:              cbor.UTF8RejectInvalid,
	}
	if decMode, err = dec.DecMode(); err != nil {
		panic(err)
	}
}

// Marshal encodes v as deterministic (RFC 8949 core deterministic) CBOR.
func Marshal(v any) ([]byte, error) {
	b, err := encMode.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	return b, nil
}

// Unmarshal decodes one CBOR record into v with a hardened decoder: no
// duplicate map keys, no indefinite lengths, no tags, no unknown struct
// fields, bounded nesting and sizes, no trailing bytes.
func Unmarshal(data []byte, v any) error {
	if err := decMode.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode record: %w", err)
	}
	return nil
}
