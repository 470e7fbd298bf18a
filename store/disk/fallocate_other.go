//go:build !linux

package disk

import "os"

// fillHoles is not done where the platform has no fallocate(2): writing
// zeros would race with the store's own writes.
func fillHoles(*os.File, int64) error { return nil }

// fallocate writes zeros where the platform has no fallocate(2).
func fallocate(f *os.File, n int64) error {
	buf := make([]byte, 1<<20)
	for off := int64(0); off < n; off += int64(len(buf)) {
		if _, err := f.WriteAt(buf[:min(int64(len(buf)), n-off)], off); err != nil {
			return err
		}
	}
	return nil
}
