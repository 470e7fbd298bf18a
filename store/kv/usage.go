package kv

import (
	"io/fs"
	"path/filepath"
	"syscall"
)

// DiskUsage returns the bytes the files under dir occupy on disk. Badger's
// value log and memtable files are sparse, so their apparent size says
// little; this counts allocated blocks, as du does.
func DiskUsage(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		} else {
			total += info.Size()
		}
		return nil
	})
	return total, err
}
