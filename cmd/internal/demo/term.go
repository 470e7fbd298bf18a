package demo

import (
	"context"
	"errors"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// keyReader reads single keys from a terminal put in cbreak mode: no line
// buffering, no echo, but Ctrl-C still interrupts (so the demo stops as
// on any signal). Close restores the terminal.
type keyReader struct {
	fd      int
	old     *unix.Termios
	keys    chan byte
	stop    context.CancelFunc
	wg      sync.WaitGroup
	restore sync.Once
}

func openKeys(f *os.File) (*keyReader, error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	t := *old
	t.Lflag &^= unix.ICANON | unix.ECHO
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &t); err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	k := &keyReader{fd: fd, old: old, keys: make(chan byte, 8), stop: stop}
	k.wg.Add(1)
	go k.read(ctx)
	return k, nil
}

// read polls the terminal, so that it can stop without a key pressed.
func (k *keyReader) read(ctx context.Context) {
	defer k.wg.Done()
	buf := make([]byte, 1)
	for ctx.Err() == nil {
		fds := []unix.PollFd{{Fd: int32(k.fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 200)
		if errors.Is(err, unix.EINTR) || n == 0 {
			continue
		}
		if err != nil || fds[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
			return
		}
		if m, err := unix.Read(k.fd, buf); err != nil || m == 0 {
			return
		}
		select {
		case k.keys <- buf[0]:
		default: // keys pressed faster than the view takes them
		}
	}
}

// Close stops reading and restores the terminal.
func (k *keyReader) Close() {
	k.stop()
	k.wg.Wait()
	k.restore.Do(func() { _ = unix.IoctlSetTermios(k.fd, unix.TCSETS, k.old) })
}
