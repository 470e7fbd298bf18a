package protocol

import "github.com/outpost-edge/outpost/store/kv"

func encodeRaw(v any) ([]byte, error) { return kv.Marshal(v) }
