// Package hub is the cloud side of Outpost: the registry of devices and
// modules, the cloud replica of every twin, deployments, the device-to-cloud
// event log, cloud-to-device messages and direct methods, served through the
// IoT Hub-shaped REST API and the edge link (sync/protocol).
//
// Every change of the hub's state is a command applied by one state machine,
// FSM (fsm.go), apart from the servers: Hub encodes a typed, versioned CBOR
// command (command.go) and applies the entry through FSM.Apply, one at a
// time under Hub.mu. The commands carry every input that is not a function
// of the state — generated keys, scopes, the command's time — so a
// replicated log (hashicorp/raft) can later carry them unchanged.
// FSM.Snapshot and FSM.Restore stream the state (snapshot.go).
//
// Open starts the retention sweeper, the job runner (jobrun.go: it runs
// jobs on the node that proposes commands, a goroutine per running job)
// and, on a clustered hub, the image sync (imagerepl.go: each node copies
// the images it lacks), besides the
// goroutines of the store packages (store/disk's monitor among them,
// unless InMemory or Options.Disk is given); Close waits for them. The
// HTTP handlers run on the caller's server.
//
// Below its disk reserve (store/disk) the hub refuses message frames and
// image pushes with ErrNoSpace (507 Insufficient Storage), so an edge keeps
// its backlog; registry and twin writes use the reserve's budget and are
// refused (507) only below the allowance.
package hub
