package membudget

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// Floor is the smallest budget the edge accepts: the sizes (Size) are
// planned against half of it, and 16 MiB of Go heap is what the smallest
// sizes need for Badger's memtables, flush and compaction buffers with the
// broker and the runtime beside them. Below it the garbage collector would
// run without pause and ingest would crawl (1.9k msg/s at 64 MiB with a
// 128 MiB Go limit), so the edge refuses to start instead.
const Floor = 32 << 20

// Errors.
var (
	ErrBelowFloor = errors.New("memory budget below the minimum")
	ErrCgroup     = errors.New("unreadable cgroup memory limit")
)

// Budget is the memory the edge may use and where that figure came from.
type Budget struct {
	Bytes int64 // 0: none
	// Source says where Bytes came from: "--memory-budget", "cgroup v2
	// /sys/fs/cgroup/…/memory.max", "cgroup v1 …/memory.limit_in_bytes";
	// empty when there is no budget.
	Source string
}

// Check refuses a budget below Floor. No budget (0) is accepted.
func Check(b Budget) error {
	if b.Bytes == 0 || b.Bytes >= Floor {
		return nil
	}
	return fmt.Errorf("%w: %d bytes (from %s), the edge needs at least %d MiB: its buffers are planned against half the budget, "+
		"and below 16 MiB of heap Badger's memtables and buffers leave the garbage collector no room (ingest collapses); "+
		"raise the limit or pass --memory-budget 32MiB or more", ErrBelowFloor, b.Bytes, b.Source, Floor>>20)
}

// v1Unlimited: cgroup v1 writes "no limit" as the largest page-aligned
// int64 (9223372036854771712); anything this large is no limit either.
const v1Unlimited = 1 << 62

// Detect reads the memory limit of the cgroup this process runs in from
// fsys, a view of the root filesystem (os.DirFS("/")): /proc/self/cgroup
// names the cgroup; cgroup v2 keeps its limits in
// /sys/fs/cgroup/<path>/memory.max and memory.high ("max": none), cgroup
// v1 in /sys/fs/cgroup/memory/<path>/memory.limit_in_bytes (a huge value:
// none). The cgroup and each of its ancestors are read, since a parent's
// limit binds its children too (and a container may see its own cgroup
// at the root of the mount), and the smallest limit wins.
//
// No /proc/self/cgroup (not Linux), no memory controller, or only missing
// limit files is no budget: Budget{}, nil. A limit file that cannot be
// read or holds something else than a number (or "max") is an error
// wrapping ErrCgroup that names the file.
func Detect(fsys fs.FS) (Budget, error) {
	data, err := fs.ReadFile(fsys, "proc/self/cgroup")
	if errors.Is(err, fs.ErrNotExist) {
		return Budget{}, nil
	}
	if err != nil {
		return Budget{}, fmt.Errorf("%w: /proc/self/cgroup: %w", ErrCgroup, err)
	}
	var best Budget
	for line := range strings.Lines(string(data)) {
		id, rest, ok1 := strings.Cut(strings.TrimSpace(line), ":")
		controllers, cgPath, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 {
			continue
		}
		var b Budget
		switch {
		case id == "0" && controllers == "":
			b, err = walk(fsys, "sys/fs/cgroup", cgPath, "cgroup v2", []string{"memory.max", "memory.high"})
		case hasController(controllers, "memory"):
			b, err = walk(fsys, "sys/fs/cgroup/memory", cgPath, "cgroup v1", []string{"memory.limit_in_bytes"})
		default:
			continue
		}
		if err != nil {
			return Budget{}, err
		}
		best = smaller(best, b)
	}
	return best, nil
}

func hasController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// walk reads the limit files of the cgroup at cgPath under mount and of
// each of its ancestors, and returns the smallest limit.
func walk(fsys fs.FS, mount, cgPath, version string, files []string) (Budget, error) {
	var best Budget
	for dir := path.Clean("/" + cgPath); ; dir = path.Dir(dir) {
		for _, f := range files {
			name := path.Join(mount, dir, f)
			n, err := readLimit(fsys, name)
			if err != nil {
				return Budget{}, fmt.Errorf("%w: %s /%s: %w", ErrCgroup, version, name, err)
			}
			best = smaller(best, Budget{Bytes: n, Source: version + " /" + name})
		}
		if dir == "/" {
			return best, nil
		}
	}
}

// readLimit reads one limit file: 0 for none (missing, "max", or v1's
// "unlimited").
func readLimit(fsys fs.FS, name string) (int64, error) {
	data, err := fs.ReadFile(fsys, name)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(data))
	if s == "max" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is neither a number of bytes nor \"max\"", s)
	}
	if n >= v1Unlimited {
		return 0, nil
	}
	return int64(n), nil
}

// smaller is the tighter of two budgets; 0 is none.
func smaller(a, b Budget) Budget {
	if b.Bytes == 0 || (a.Bytes != 0 && a.Bytes <= b.Bytes) {
		return a
	}
	return b
}
