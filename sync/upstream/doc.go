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
package upstream
