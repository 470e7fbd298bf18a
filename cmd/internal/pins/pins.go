//go:build tools

// Package pins keeps the dependencies that later work builds on pinned in
// go.mod at versions known to work together (see
// shared/reference/libraries.md §0): raft-boltdb/v2 must stay at v2.3.0
// because v2.3.1 does not compile against raft v1.8.0. The build tag keeps it
// out of every binary; `go mod tidy` still honours the imports.
package pins

import (
	_ "github.com/dgraph-io/badger/v4"
	_ "github.com/fxamacker/cbor/v2"
	_ "github.com/hashicorp/raft"
	_ "github.com/hashicorp/raft-boltdb/v2"
	_ "github.com/mochi-mqtt/server/v2"
	_ "github.com/rogpeppe/go-internal/testscript"
	_ "pgregory.net/rapid"
)
