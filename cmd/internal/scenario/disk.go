package scenario

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/sys/unix"

	"github.com/outpost-edge/outpost/store/disk"
)

// mounttmpfs DIR SIZE: mount a tmpfs of SIZE (e.g. 256MiB) on DIR (created
// if needed) for a scenario that fills a disk; it is unmounted when the
// script ends. It fails the script where mounting is impossible (not
// root, no tmpfs): a disk-full scenario that did not run must not pass.
func cmdMountTmpfs(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: mounttmpfs DIR SIZE")
	}
	size, err := disk.ParseSize(args[1])
	ts.Check(err)
	dir := ts.MkAbs(args[0])
	ts.Check(os.MkdirAll(dir, 0o755))
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		ts.Fatalf("mount a tmpfs of %s on %s (the scenario needs root, or CAP_SYS_ADMIN): %v", args[1], dir, err)
	}
	ts.Defer(func() {
		// Deferred functions run before testscript interrupts the background
		// processes: an edge still running holds files here, and pulling the
		// disk from under it would hang its shutdown. Unmount once they are
		// gone (detach after 30 s).
		if unix.Unmount(dir, 0) == nil {
			return
		}
		go func() {
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				if unix.Unmount(dir, 0) == nil {
					return
				}
			}
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}()
	})
}

// fillfs [-size N] FILE: write FILE until its filesystem is full (ENOSPC),
// or N bytes (e.g. 96MiB), as another program on the same disk would, and
// keep it; prints the bytes written.
func cmdFillFS(ts *testscript.TestScript, neg bool, args []string) {
	fs := flag.NewFlagSet("fillfs", flag.ContinueOnError)
	sizeS := fs.String("size", "", "bytes to write (default: until the disk is full)")
	ts.Check(fs.Parse(args))
	args = fs.Args()
	if neg || len(args) != 1 {
		ts.Fatalf("usage: fillfs [-size N] FILE")
	}
	limit := int64(-1)
	if *sizeS != "" {
		n, err := disk.ParseSize(*sizeS)
		ts.Check(err)
		limit = n
	}
	f, err := os.OpenFile(ts.MkAbs(args[0]), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	ts.Check(err)
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	var total int64
	for limit < 0 || total < limit {
		chunk := buf
		if limit >= 0 {
			chunk = buf[:min(int64(len(buf)), limit-total)]
		}
		n, err := f.Write(chunk)
		total += int64(n)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		ts.Check(err)
	}
	if limit >= 0 {
		ts.Check(f.Sync())
		fmt.Fprintf(ts.Stdout(), "wrote %d bytes\n", total)
		return
	}
	for { // the last blocks: smaller writes until not a byte fits
		n, err := f.Write(buf[:4096])
		total += int64(n)
		if err != nil {
			break
		}
	}
	fmt.Fprintf(ts.Stdout(), "wrote %d bytes until the disk was full\n", total)
}
