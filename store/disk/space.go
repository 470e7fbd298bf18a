package disk

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Space is one filesystem reading.
type Space struct {
	Size  int64 // bytes of the filesystem
	Avail int64 // bytes an unprivileged writer may still allocate
}

// Statfs reads the filesystem that holds path.
func Statfs(path string) (Space, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return Space{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := int64(st.Bsize) //nolint:unconvert // int32 on some platforms
	return Space{Size: int64(st.Blocks) * bs, Avail: int64(st.Bavail) * bs}, nil
}

// Holes returns the bytes the regular files under dir may still allocate
// without growing: apparent size minus allocated blocks, summed. For a
// Badger directory these are the unwritten parts of the memory-mapped
// write-ahead logs and value-log files. A directory that does not exist has
// none.
func Holes(dir string) (int64, error) {
	holes, _, err := new(holeScanner).scan(dir, false)
	return holes, err
}

// FillHoles allocates the blocks of the holes of the regular files under
// dir without changing their size or content (fallocate with
// FALLOC_FL_KEEP_SIZE), and returns the holes left, as Holes does, in the
// same walk. A file it could not fill (ENOSPC, most likely) is counted with
// its hole, the walk goes on, and the first such error is returned as fill.
func FillHoles(dir string) (holes int64, fill, err error) {
	return new(holeScanner).scan(dir, true)
}

// holeScanner walks a Badger directory for holes and remembers the files
// that cannot have any more: a table (.sst) or a value-log file (.vlog)
// other than the newest, once seen whole and not empty, is never written
// again. Later walks skip them without a stat, so a measurement costs one
// directory read plus a stat of the few files still being written (the
// write-ahead logs, the newest value log, a table being built), however
// many files a large store holds.
type holeScanner struct {
	mu     sync.Mutex
	sealed map[string]bool
}

func (s *holeScanner) scan(dir string, fill bool) (total int64, fillErr, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	var whole []string // value-log files seen without a hole
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking: a flushed memtable, a GC'd value log
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		seen[path] = true
		if s.sealed[path] {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		h := hole(info)
		if h > 0 && fill {
			if filled, err := fillFile(path, info.Size()); err != nil {
				fillErr = cmp.Or(fillErr, err)
			} else {
				h = filled
			}
		}
		total += h
		if h == 0 && info.Size() > 0 {
			switch filepath.Ext(path) {
			case ".sst":
				s.seal(path)
			case ".vlog":
				whole = append(whole, path)
			}
		}
		return nil
	})
	if err != nil {
		return 0, fillErr, fmt.Errorf("holes under %s: %w", dir, err)
	}
	if n := len(whole); n > 0 {
		newest := slices.Max(whole) // Badger numbers them with a fixed width
		for _, p := range whole {
			if p != newest && filepath.Dir(p) == filepath.Dir(newest) {
				s.seal(p)
			}
		}
	}
	for p := range s.sealed {
		if !seen[p] {
			delete(s.sealed, p) // removed: compacted, or reclaimed by value-log GC
		}
	}
	return total, fillErr, nil
}

func (s *holeScanner) seal(path string) {
	if s.sealed == nil {
		s.sealed = map[string]bool{}
	}
	s.sealed[path] = true
}

// fillFile backs the first size bytes of path with blocks and returns the
// hole left (0 unless the file changed meanwhile).
func fillFile(path string, size int64) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, nil // removed meanwhile
	}
	defer f.Close()
	if err := fillHoles(f, size); err != nil {
		return 0, fmt.Errorf("allocate %s: %w", path, err)
	}
	info, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return hole(info), nil
}

func hole(info fs.FileInfo) int64 {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return 0
	}
	return max(info.Size()-int64(st.Blocks)*512, 0)
}

// allocate creates path with n bytes of blocks allocated (not a sparse
// file), so the space is the caller's until the file is removed. On
// failure nothing is left behind.
func allocate(path string, n int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("ballast %s: %w", path, err)
	}
	err = fallocate(f, n)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("ballast %s of %d bytes: %w", path, n, err)
	}
	return nil
}

// allocated reports the bytes of blocks path holds; 0 if it does not exist.
func allocated(path string) (int64, error) {
	info, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return min(int64(st.Blocks)*512, info.Size()), nil
	}
	return info.Size(), nil
}
