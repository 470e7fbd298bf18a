package disk

import (
	"os"

	"golang.org/x/sys/unix"
)

func fallocate(f *os.File, n int64) error {
	if n == 0 {
		return nil
	}
	return unix.Fallocate(int(f.Fd()), 0, 0, n)
}

// fillHoles allocates blocks for the first n bytes of f, keeping its size
// (a concurrent truncate must not be undone).
func fillHoles(f *os.File, n int64) error {
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, n)
}
