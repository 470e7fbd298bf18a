// Package protocol defines the edge–hub link: versioned CBOR frames carried
// in HTTP request and response bodies (so the link works through proxies),
// and their hardened decoding. docs/protocol.md describes the exchange.
//
// Every frame is deterministic CBOR (store/kv's codec) with integer keys.
// Bodies larger than CompressAbove are gzip-compressed and say so with
// Content-Encoding: gzip; the reader caps the decompressed size at MaxFrame.
package protocol
