// Package kv owns the one Badger database of an outpost process: options
// sized for a small gateway, the key prefixes of every store package, a
// group-commit writer, the durability setting, the deterministic CBOR codec
// for records, and scheduled space reclamation.
//
// Writes go through one writer goroutine that commits whatever is queued as
// one Badger transaction (no timer: a lone writer is never delayed), so N
// concurrent committers pay one commit — and in Power durability one fsync —
// between them. Open starts that goroutine and a maintenance goroutine
// (value-log GC and, after many deletes, a compaction that returns disk);
// Close waits for both.
//
// With Options.Space (a store/disk monitor), a Commit that grows the store
// is refused once the disk is below the allowance for Badger's mapped files
// (Allowance), so Badger never writes a mapped page the filesystem cannot
// back; deletes and the queues' CommitAsync still run.
package kv
