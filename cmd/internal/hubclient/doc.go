// Package hubclient is the operator side of the hub's service REST API
// (shared/design/CONTRACT.md §3): it finds the hub owner's connection string
// and the hub URL, signs every request with an owner SAS token, turns the
// hub's JSON errors into *APIError, and reads the device-to-cloud event log
// with long polls. The outpost device|module|twin|deploy|events|c2d|method
// commands are thin layers over it.
//
// The hub URL may be a comma-separated list, the nodes of a hub cluster: a
// command starts at a random node and moves to the next when one cannot be
// reached or answers 502, 503 or 504 (a create or update only when nothing
// of it was sent; a delete always); it remembers nothing between commands.
//
// The package starts no goroutines of its own; everything runs on the
// caller's goroutine and stops with the caller's context.
package hubclient
