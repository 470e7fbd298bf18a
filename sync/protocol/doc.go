// Package protocol defines the edge–hub link: versioned CBOR frames carried
// in HTTP request and response bodies (so the link works through proxies),
// and their hardened decoding. docs/protocol.md describes the exchange.
//
// Every frame is deterministic CBOR (store/kv's codec) with integer keys.
// Bodies larger than CompressAbove are gzip-compressed and say so with
// Content-Encoding: gzip; the reader caps the decompressed size at MaxFrame.
//
// # Wire types
//
// The frames are the link's own types, not store records, so a change of
// a store's layout cannot silently change the wire: TestGolden encodes one
// of every frame with every field set and compares the bytes with
// testdata/golden/*.cbor (and decodes them back). What a frame carries:
//
//   - Identities are protocol.Identity (and IdentityAuth), converted from
//     and to the registry's identity.Identity by IdentityFromStore,
//     Identity.Store and their slice forms at the hub's and the edge's
//     ends of the link.
//   - Version vectors are crdt.VV, kept on purpose: store/crdt is the
//     replicated-twin math (standard library only, no storage), a VV is a
//     plain value of it (replica id → sequence number) with no codec of
//     its own, and both ends compute with it directly.
//   - Twin deltas are twin.Batch, whose CBOR form is not its Go layout but
//     store/twin/codec.go's compact wire encoding (origin table, relative
//     walls, paired write and clear): those wire types are the link's
//     format, pinned by TestGolden like the frames.
package protocol
