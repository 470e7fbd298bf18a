package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// logFile is a module's stdout and stderr: a file rotated once it reaches
// half the budget (current.log → previous.log), so a chatty module never
// holds more than max bytes of disk. Followers are woken on every write.
type logFile struct {
	dir string
	max int64

	mu     sync.Mutex
	f      *os.File
	size   int64
	notify chan struct{} // closed and replaced on every write
}

// openLog opens a module's log in dir: the edge's alone (0700, files
// 0600): a module's output may hold its credentials, and other modules run
// under other uids.
func openLog(dir string, max int64) (*logFile, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	l := &logFile{dir: dir, max: max, notify: make(chan struct{})}
	f, err := os.OpenFile(l.current(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	l.f, l.size = f, st.Size()
	return l, nil
}

func (l *logFile) current() string  { return filepath.Join(l.dir, "current.log") }
func (l *logFile) previous() string { return filepath.Join(l.dir, "previous.log") }

// Write appends p; it never fails the module's output (a full disk loses
// log lines, not the process).
func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return len(p), nil
	}
	if l.size+int64(len(p)) > l.max/2 && l.size > 0 {
		l.rotate()
	}
	n, _ := l.f.Write(p)
	l.size += int64(n)
	close(l.notify)
	l.notify = make(chan struct{})
	return len(p), nil
}

func (l *logFile) rotate() {
	l.f.Close()
	_ = os.Rename(l.current(), l.previous())
	f, err := os.OpenFile(l.current(), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		l.f = nil
		return
	}
	l.f, l.size = f, 0
}

// note writes one supervisor line into the module's log.
func (l *logFile) note(format string, args ...any) {
	fmt.Fprintf(l, "[outpost %s] %s\n", time.Now().UTC().Format(time.RFC3339), fmt.Sprintf(format, args...))
}

func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	close(l.notify)
	l.notify = make(chan struct{})
	return err
}

// Tail returns the last n lines (all with n ≤ 0) and the offset in the
// current file where they end, for Follow.
func (l *logFile) tail(n int) ([]byte, int64) {
	l.mu.Lock()
	size := l.size
	l.mu.Unlock()
	prev, _ := os.ReadFile(l.previous())
	cur := readUpTo(l.current(), size)
	all := append(prev, cur...)
	if n > 0 {
		all = lastLines(all, n)
	}
	return all, int64(len(cur))
}

func readUpTo(path string, size int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, size))
	return b
}

func lastLines(b []byte, n int) []byte {
	end := len(b)
	if end > 0 && b[end-1] == '\n' {
		end--
	}
	for i := 0; i < n; i++ {
		j := bytes.LastIndexByte(b[:end], '\n')
		if j < 0 {
			return b
		}
		end = j
	}
	return b[end+1:]
}

// follow writes the last n lines to w, then everything written after, until
// ctx is done.
func (l *logFile) follow(ctx context.Context, n int, w io.Writer) error {
	data, off := l.tail(n)
	if _, err := w.Write(data); err != nil {
		return err
	}
	for {
		l.mu.Lock()
		wake, size := l.notify, l.size
		l.mu.Unlock()
		if size < off { // rotated: the rest of the old file is in previous.log
			prev, _ := os.ReadFile(l.previous())
			if int64(len(prev)) > off {
				if _, err := w.Write(prev[off:]); err != nil {
					return err
				}
			}
			off = 0
		}
		if size > off {
			f, err := os.Open(l.current())
			if err != nil {
				return err
			}
			_, err = f.Seek(off, io.SeekStart)
			if err == nil {
				var k int64
				k, err = io.Copy(w, io.LimitReader(f, size-off))
				off += k
			}
			f.Close()
			if err != nil {
				return err
			}
			if fl, ok := w.(interface{ Flush() }); ok {
				fl.Flush()
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		}
	}
}
