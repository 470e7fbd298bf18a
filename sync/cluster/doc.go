// Package cluster is one node of a replicated state machine: hashicorp/raft
// (v1.8.0) over a mutually authenticated TLS 1.3 transport, with its log and
// stable store in raft-boltdb (v2.3.0) and its snapshots in files under the
// node's directory. The node takes any raft.FSM through Options; it knows
// nothing of the hub.
//
// The log store is raft-boltdb v2.3.0 (v2.3.1 does not build against raft
// v1.8.0; see the pins package): it is what go.mod already pins, and a missing
// key is the error "not found" that raft compares by string, where raft-wal
// answers (0, nil). TestStoreKeepsRaftsNotFoundContract guards that.
//
// The transport is a raft.StreamLayer over TLS 1.3: every connection, in and
// out, presents a certificate issued by the cluster CA (NewCA, CA.Issue) and
// verifies the other side's against it. A peer without such a certificate
// cannot open a raft connection, so it never sees the log.
//
// Goroutines: Open starts raft's own goroutines and the stream layer's accept
// loop, which starts one goroutine per incoming connection for its TLS
// handshake, at most 32 at once (more are closed at once). Close stops and
// waits for all of them.
package cluster
