// Package demo runs `outpost demo`: everything Outpost does, on one
// machine, from nothing but the outpost binary. Under one directory it
// starts a hub and an edge (child processes of the running executable,
// each in its own process group, stopped in order), a link proxy between
// them that can cut and restore the link (cmd/internal/linkproxy), the
// sample sensor and filter modules deployed through the hub with the
// running executable as their image (`outpost sample tempsensor|filter`,
// started by the edge's supervisor), and a few simulated leaf devices
// (broker/client) that publish telemetry and follow their twins.
//
// Then either a live view (link, queues, message rates, twins, modules;
// keys cut and restore the link) or, headless, a scripted story: steady
// state, link cut, twin edits on both sides, link restored, and a check
// that every acknowledged message reached the hub's event log exactly once
// (counted by message id, Tally) and that the twins converged
// (compareTwins).
//
// A second run on the same directory reuses the hub's identities and the
// edge's data: the hub has a fixed HostName, so its port may change.
//
// # Goroutines
//
// Run starts one goroutine per child process (waiting for its exit), one
// following the hub's event log, one publisher per device and, with a
// terminal, one reading keys; Run waits for all of them before it returns.
package demo
