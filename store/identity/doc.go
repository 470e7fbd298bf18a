// Package identity is the edge's cache of the device and module identities
// in its scope, kept in kv so that an edge restarted with no network still
// authenticates its children and modules, and the MQTT CONNECT rules of IoT
// Hub and IoT Edge (SAS tokens, X.509 thumbprints, parent/child scopes) that
// decide who may connect.
//
// The hub fills the cache (Replace with its snapshot of the edge's scope, or
// Put and Delete for single changes); the broker calls Authenticate on every
// CONNECT. Records are stored in plain CBOR under kv.PrefixIdentity: like
// the rest of the data directory they hold keys, so it must stay private
// (mode 0700). No goroutines are started.
package identity
