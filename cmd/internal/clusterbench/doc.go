// Package clusterbench holds the benchmarks of the hub cluster: events
// appended per second (and per CPU-second) by ten edges draining at once
// into a single hub, a one-node raft cluster and a three-node cluster
// (nodes started with cmd/internal/hub.Run in this process, edges real
// sync/upstream links over their own stores); the failover time of a
// three-node cluster of real `outpost hub` processes when its leader is
// killed; the snapshot and restore time of a hub state machine holding
// 1 000 000 events. Run them with `make bench` (see .ci/bench).
package clusterbench
