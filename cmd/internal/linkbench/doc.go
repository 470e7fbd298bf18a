// Package linkbench holds the benchmarks of the edge–hub link: a real hub
// (sync/hub on disk, over HTTP), a real edge store and sync/upstream, with
// cmd/internal/linkproxy between them to count bytes and to throttle or
// cut the link. Run them with `make bench` (see .ci/bench).
package linkbench
