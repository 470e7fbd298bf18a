// Package disktest gives tests of the packages that consult a disk monitor
// a real one in a known state, on the real filesystem of a test directory.
package disktest

import (
	"testing"

	"github.com/outpost-edge/outpost/store/disk"
)

// Low opens a real monitor on dir whose reserve lies far above the free
// space of dir's filesystem: telemetry is refused, management writes are
// not. It is closed when the test ends.
func Low(t testing.TB, dir string) *disk.Monitor {
	t.Helper()
	sp, err := disk.Statfs(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := disk.Open(disk.Options{Dir: dir, Allowance: 1 << 20, Budget: sp.Avail + 1<<40})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}
