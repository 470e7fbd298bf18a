// Package webui holds the browser dashboards of the edge (served by the
// local API at /, cmd/internal/localapi) and of the hub (served at /ui/,
// cmd/internal/hub): their embedded assets (no CDN, no framework), a
// bounded Server-Sent Events fan-out, and the hub's login sessions.
package webui
