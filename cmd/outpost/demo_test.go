package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDemoLiveKeys drives `outpost demo`'s live view on a real terminal (a
// pseudo-terminal): keys without Enter, c cuts the link (the backlog
// builds), t edits a twin at the hub (pending hub→edge while the link is
// down), r restores it (the backlog drains, the twins converge), q quits
// with exit 0 and gives the terminal back as it was.
func TestDemoLiveKeys(t *testing.T) {
	t.Parallel()
	exe, err := exec.LookPath("outpost") // this test binary, as testscript installed it
	if err != nil {
		t.Fatal(err)
	}
	master, slave := openPTY(t)
	before, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	// Modules of an edge running as root run under their own uids: they
	// must be able to search every directory above the demo's.
	tmp := t.TempDir()
	for _, d := range []string{tmp, filepath.Dir(tmp)} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(exe, "demo", "--dir", filepath.Join(tmp, "demo"))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-done
	})
	scr := newScreen(master)
	scr.waitFrame(t, "the demo settled", `link       online`, `sensor  running`, `filter  running`, `leaf-3\s+yes`)
	scr.press(t, 'c')
	scr.waitFrame(t, "the backlog builds", `link cut by the demo: r restores it`, `\$upstream\s+[1-9]\d*\s`, `on the way [1-9]`)
	scr.press(t, 't')
	scr.waitFrame(t, "a twin edit waits at the hub", `link cut by the demo`, `desired\.setpoint hub→edge`)
	scr.press(t, 'r')
	scr.waitFrame(t, "the backlog drains and the twins converge", `link       online`, `\$upstream\s+\d+\s+[01]s`,
		`leaf-1\s+yes`, `leaf-2\s+yes`, `leaf-3\s+yes`, `duplicated 0`)
	scr.press(t, 'q')
	select {
	case <-done:
		if waitErr != nil {
			t.Fatalf("outpost demo: %v\n%s", waitErr, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("outpost demo did not stop within 60s of q")
	}
	if out := scr.text(); !regexp.MustCompile(`stopped after \d+s: leaf devices sent [1-9]\d*, at hub \d+`).MatchString(out) {
		t.Errorf("no last line: %q", out[max(0, len(out)-300):])
	}
	after, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil || after.Lflag != before.Lflag {
		t.Errorf("terminal not restored: lflag %#x, was %#x (%v)", after.Lflag, before.Lflag, err)
	}
}

// openPTY opens a pseudo-terminal pair.
func openPTY(t *testing.T) (master, slave *os.File) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// screen collects what the demo writes to the terminal.
type screen struct {
	master *os.File
	mu     sync.Mutex
	buf    bytes.Buffer
	seen   int // frames before the last key press
}

func newScreen(master *os.File) *screen {
	s := &screen{master: master}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := master.Read(b)
			s.mu.Lock()
			s.buf.Write(b[:n])
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return s
}

func (s *screen) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.ReplaceAll(s.buf.String(), "\r\n", "\n")
}

const clearScreen = "\x1b[H\x1b[2J"

// press types key; later waits look only at frames drawn after it.
func (s *screen) press(t *testing.T, key byte) {
	s.seen = strings.Count(s.text(), clearScreen)
	if _, err := s.master.Write([]byte{key}); err != nil {
		t.Fatal(err)
	}
}

// waitFrame waits until one whole frame drawn since the last key press
// matches every pattern.
func (s *screen) waitFrame(t *testing.T, what string, patterns ...string) {
	t.Helper()
	res := make([]*regexp.Regexp, len(patterns))
	for i, p := range patterns {
		res[i] = regexp.MustCompile(p)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		frames := strings.Split(s.text(), clearScreen)
		// The last piece may be a frame still being written.
		for _, f := range frames[min(s.seen+1, len(frames)-1) : len(frames)-1] {
			if matchAll(f, res) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no frame within 60s matches %q; last frame:\n%s", what, patterns, frames[max(0, len(frames)-2)])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func matchAll(s string, res []*regexp.Regexp) bool {
	for _, re := range res {
		if !re.MatchString(s) {
			return false
		}
	}
	return true
}
