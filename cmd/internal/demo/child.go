package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// child is the hub or the edge: `outpost hub|edge` run from the demo's
// own executable, its output appended to a log file in the demo's
// directory. It runs in its own process group, so a Ctrl-C at the
// terminal reaches the demo only and the demo stops its children in
// order, and it gets SIGTERM if the demo dies (Pdeathsig).
type child struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	err     error         // its exit, once done is closed
	// reported: the demo already said that it stopped by itself.
	reported bool
}

func startChild(exe, name, logPath string, args, env []string) (*child, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	defer f.Close()
	fmt.Fprintf(f, "--- outpost demo starts outpost %s at %s\n", strings.Join(args, " "), time.Now().UTC().Format(time.RFC3339))
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the %s (%s): %w", name, exe, err)
	}
	c := &child{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// waitReady waits until the child wrote readyPath (its ready.json) with
// its own pid, and decodes it into v.
func (c *child) waitReady(ctx context.Context, readyPath string, timeout time.Duration, v any) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		data, err := os.ReadFile(readyPath)
		var pid struct{ PID int }
		if err == nil && json.Unmarshal(data, &pid) == nil && pid.PID == c.cmd.Process.Pid {
			return json.Unmarshal(data, v)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return c.died()
		case <-deadline.C:
			return fmt.Errorf("the %s is not ready after %s: %s (whole log: %s)", c.name, timeout, c.tail(), c.logPath)
		case <-tick.C:
		}
	}
}

// tail is the end of the child's log, on one line.
func (c *child) tail() string {
	data, _ := os.ReadFile(c.logPath)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.Join(lines[max(0, len(lines)-3):], " | ")
}

// died is the error of a child that stopped by itself; stop reports it
// once.
func (c *child) died() error {
	c.reported = true
	return fmt.Errorf("the %s stopped by itself (%v): %s (whole log: %s)", c.name, c.err, c.tail(), c.logPath)
}

// stop asks the child to stop (SIGTERM), kills it after timeout, and
// waits for it. A child that had already stopped is reported.
func (c *child) stop(timeout time.Duration) error {
	select {
	case <-c.done:
		if c.reported {
			return nil
		}
		return c.died()
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("the %s did not stop within %s after SIGTERM and was killed; see %s", c.name, timeout, c.logPath)
	}
	var exit *exec.ExitError
	if errors.As(c.err, &exit) {
		return fmt.Errorf("the %s exited with %v; see %s", c.name, c.err, c.logPath)
	}
	return c.err
}

// removeStale removes a ready file left by a run that was killed, so
// waitReady cannot mistake it for the new one's (it also checks the pid).
func removeStale(dir string) { _ = os.Remove(filepath.Join(dir, "ready.json")) }
