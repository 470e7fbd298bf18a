// Package crdt is the pure replicated data model behind Outpost twins: a hybrid
// logical clock, one last-writer-wins register per JSON path with clear
// watermarks for deletes, version vectors, delta extraction and causally
// stable garbage collection.
//
// A twin section (tags, properties.desired, properties.reported) is flattened
// into registers keyed by Path. A register holds a write W (Val, Obj or Del)
// and a clear watermark Clr; both merge by taking the larger Key, so a Doc is
// a join-semilattice and replicas converge whatever the delivery order. The
// visible document equals replaying all ops in Key order with IoT Hub patch
// semantics. The edge-local overlay holds operator overrides of desired that
// apply only while the cloud has not touched their path (Effective).
//
// Delta protocol: Delta(peerVV) lists every field whose dot the peer does not
// cover, sorted by (Origin, Seq). Chunks splits it for the wire and puts a
// Commit{Origin, UpTo} after the last field of each origin. A receiver skips
// fields whose dot its VV covers, merges the rest, and only after merging
// every field before a Commit calls VV.Advance(commit). An interrupted
// transfer therefore resumes from the last commit; a repeated chunk costs
// bytes, never correctness.
//
// The package does no I/O and starts no goroutines. Durable state (the HLC
// upper bound, the dot sequence, registers) is persisted by callers through
// func hooks and the fields returned by mutating methods. A Doc, Clock or Seq
// is not safe for concurrent use; its owner serializes access.
package crdt
