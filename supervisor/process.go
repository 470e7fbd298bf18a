package supervisor

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// rlimits maps Docker's ulimit names to Linux resources.
var rlimits = map[string]int{
	"as": unix.RLIMIT_AS, "core": unix.RLIMIT_CORE, "cpu": unix.RLIMIT_CPU, "fsize": unix.RLIMIT_FSIZE,
	"nofile": unix.RLIMIT_NOFILE, "nproc": unix.RLIMIT_NPROC, "stack": unix.RLIMIT_STACK,
}

func rlimitNames() []string {
	var names []string
	for n := range rlimits {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// process is one running instance of a module: an OS process in its own
// process group.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	exit exitStatus
}

type exitStatus struct {
	code   int    // exit code; -1 when killed by a signal
	signal string // the signal that ended it, if any
	err    error  // the process could not be waited for
}

func (e exitStatus) String() string {
	switch {
	case e.err != nil:
		return e.err.Error()
	case e.signal != "":
		return "killed by " + e.signal
	}
	return fmt.Sprintf("exit code %d", e.code)
}

// spawn starts prog with argv[0] argv0. The process gets its own process group (so stop
// reaches its children too) and dies with the edge (Pdeathsig): an
// orphaned module would fight its successor for its MQTT identity. With
// cred it runs as that uid and gid without supplementary groups (Go sets
// them before the working directory and the death signal, which a change
// of user would otherwise clear).
func spawn(prog, argv0 string, args, env []string, dir string, out *logFile, hc *HostConfig, cred *syscall.Credential) (*process, error) {
	cmd := exec.Command(prog, args...)
	cmd.Args[0] = argv0
	cmd.Env, cmd.Dir = env, dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	if err := limit(cmd.Process.Pid, hc); err != nil {
		// A limit that cannot be set is a refusal, not a silent run
		// without it.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		return nil, fmt.Errorf("set resource limits: %w", err)
	}
	go func() {
		err := cmd.Wait()
		p.exit = exitOf(cmd, err)
		close(p.done)
	}()
	return p, nil
}

// limit applies the resource limits to the started process (prlimit: Go
// cannot set them between fork and exec; the window is the time to exec).
func limit(pid int, hc *HostConfig) error {
	if hc == nil {
		return nil
	}
	if hc.Memory > 0 {
		l := unix.Rlimit{Cur: uint64(hc.Memory), Max: uint64(hc.Memory)}
		if err := unix.Prlimit(pid, unix.RLIMIT_AS, &l, nil); err != nil {
			return fmt.Errorf("memory: %w", err)
		}
	}
	for _, u := range hc.Ulimits {
		l := unix.Rlimit{Cur: u.Soft, Max: u.Hard}
		if err := unix.Prlimit(pid, rlimits[u.Name], &l, nil); err != nil {
			return fmt.Errorf("%s: %w", u.Name, err)
		}
	}
	return nil
}

func exitOf(cmd *exec.Cmd, err error) exitStatus {
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return exitStatus{code: -1, err: err}
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return exitStatus{code: -1, signal: unix.SignalName(ws.Signal())}
	}
	return exitStatus{code: cmd.ProcessState.ExitCode()}
}

// stop sends SIGTERM to the process group, then SIGKILL after grace, and
// waits for the process to exit. Whatever is left of the group is killed.
func (p *process) stop(grace time.Duration) {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// baseEnv is what every module inherits from the edge's environment; the
// rest of the edge's variables (secrets among them) are not passed on.
func baseEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "LANG", "LC_ALL", "TZ", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}
