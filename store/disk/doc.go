// Package disk keeps a process's data disk from filling under its
// memory-mapped store. Badger writes its memtable write-ahead log, its value
// log and its tables through mmap into files created sparse with ftruncate;
// a page written into a hole when the filesystem has no block left is a
// SIGBUS, not an error. So the free space that matters is
//
//	statfs free − the holes of the store's files (apparent − allocated size)
//
// compared against an allowance for the files the store may still create
// (the next write-ahead log and value-log file, a memtable flush and a
// compaction's tables). Levels follow from it:
//
//   - ok: everything is written;
//   - telemetry-refused: effective free space is below Allowance + Budget;
//     queue appends (telemetry) are refused, management writes (twins,
//     identities, deployments) still use the Budget;
//   - full: effective free space is below Allowance; every write that grows
//     the store is refused, deletes (acks, drains, GC) still run.
//
// Between measurements the callers' writes are charged against the margin
// left at the last one (twice their size, the store's worst case), and a
// write that would cross a threshold asks for a new measurement, so a burst
// cannot outrun the monitor.
//
// A ballast file (preallocated with fallocate) holds Allowance bytes of the
// disk for the store. When something else eats the disk below the
// allowance, the ballast is released, so the store can still open, flush,
// drain and garbage-collect; it is taken again once there is room for it
// and the reserve. While it is released, the reserve grows by its size:
// what the ballast gave back is for the store, not for more telemetry.
// Open releases it before the store opens if the free space
// is already below the reserve, so a process killed on a full disk starts
// again.
//
// With Options.FillHoles the monitor also allocates the blocks of those
// holes (fallocate, keeping the size) at each measurement, and charges ask
// for a measurement every few MiB, so the store's mapped files are backed
// soon after Badger creates them: a disk that another program fills at
// once can then only fault a file the store created in the last moments.
//
// # Goroutines
//
// Open starts one goroutine, the monitor, which measures every
// Options.Every and when a write asks for it; Close stops it and waits.
// Level changes and ballast moves are logged once each, at the transition.
package disk
