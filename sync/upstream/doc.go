// Package upstream is the edge's side of the link to the hub: it drains the
// $upstream queues in order, exchanges twin deltas both ways, and pulls
// identities, cloud-to-device messages and direct method calls
// (docs/protocol.md).
//
// Run starts three loops — drain, twins and pull — and returns when ctx is
// done and all three have stopped. Each loop retries with jittered backoff
// on its own, and any loop that gets through wakes the others at once, so
// the drain starts the moment the link is back, not at its next retry.
// When the hub refuses the edge's credentials (401, 403) the link says so
// (state unauthorized or forbidden, an ERROR line) and only the pull loop
// asks again, slowly (30 s doubling to 5 min); the others wait for it.
//
// Options.URLs may name the nodes of a hub cluster: the link uses one at a
// time and moves to the next when a request to it fails (nodes.go), or to
// the leader a cluster names (unless that node failed this link in the
// last minute). With several nodes, each request runs with a goroutine
// that cancels it when the link moves away from its node; it ends with the
// request. A single hub's link starts none.
package upstream
