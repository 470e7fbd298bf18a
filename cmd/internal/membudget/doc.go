// Package membudget decides how much memory `outpost edge` may use and how
// it spends it: the budget (--memory-budget, else the memory limit of the
// edge's cgroup), and from it the Go memory limit and Badger's memtables,
// tables and caches. Detection reads files only (an fs.FS, so tests give
// it fake cgroup trees); sizing is a pure function. It starts no
// goroutines.
package membudget
