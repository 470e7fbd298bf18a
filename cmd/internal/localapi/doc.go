// Package localapi is the edge's local HTTP API (`outpost edge --api`):
// liveness, status, metrics, twins, queue contents, cloud-to-device
// messages, direct methods, module logs and restarts, and the live
// dashboard (its page and assets from cmd/internal/webui, its event
// stream here).
//
// It is safe by default. Without a credential it serves only liveness
// (GET /healthz) and, when it listens on loopback, the read-only status,
// metrics and dashboard page. Everything else needs the operator token
// (<data>/api-token, created 0600 at first start, sent as
// `Authorization: Bearer …`) or a session cookie a browser obtains
// through a single-use login URL (`outpost edge dashboard`). Every request
// has its Host header and Origin checked (DNS rebinding, cross-site
// requests); writes need a content type a cross-site form cannot send.
//
// Open starts two goroutines, the HTTP server and the dashboard's sampler
// (Status every LiveInterval, kept for the plots and sent to the event
// streams); Close stops both and waits.
package localapi
