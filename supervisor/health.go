package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// watchHealth runs the module's health check until the instance stops:
// after StartPeriod, every Interval (default 30 s), each run bounded by
// Timeout (default 30 s). Retries (default 3) failures in a row make the
// module unhealthy; with restartPolicy on-unhealthy or always it is then
// restarted after backoff. The check runs as the module (cred).
func (s *Supervisor) watchHealth(in *instance, gen int, hc Healthcheck, env []string, dir string, cred *syscall.Credential) {
	ctx, cancel := context.WithCancel(s.ctx)
	in.healthOK = cancel
	interval := durationOr(hc.Interval, 30*time.Second)
	timeout := durationOr(hc.Timeout, 30*time.Second)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		wait := time.Duration(hc.StartPeriod) + interval // as Docker: the first check an interval after start
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = interval
			err := runCheck(ctx, hc.Test, env, dir, timeout, cred)
			if ctx.Err() != nil {
				return
			}
			s.post(func() { s.healthResult(in, gen, hc, err) })
		}
	}()
}

func durationOr(ns int64, d time.Duration) time.Duration {
	if ns > 0 {
		return time.Duration(ns)
	}
	return d
}

func runCheck(ctx context.Context, test, env []string, dir string, timeout time.Duration, cred *syscall.Credential) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := test[1:]
	if test[0] == "CMD-SHELL" {
		args = []string{"/bin/sh", "-c", strings.Join(test[1:], " ")}
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env, cmd.Dir = env, dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("health check timed out after %s", timeout)
	}
	if err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		if msg != "" {
			return fmt.Errorf("health check failed: %v: %s", err, msg)
		}
		return fmt.Errorf("health check failed: %v", err)
	}
	return nil
}

func (s *Supervisor) healthResult(in *instance, gen int, hc Healthcheck, err error) {
	if in.gen != gen || in.proc == nil {
		return
	}
	if err == nil {
		if in.fails > 0 || in.st.RuntimeStatus != "running" {
			in.fails = 0
			in.st.RuntimeStatus, in.st.StatusDescription = "running", "running; healthy"
			s.changed()
		}
		return
	}
	in.fails++
	retries := hc.Retries
	if retries <= 0 {
		retries = 3
	}
	if in.fails < retries {
		return
	}
	s.note(in.spec.Name, "unhealthy: %v (%d in a row)", err, in.fails)
	s.log.Warn("module unhealthy", "module", in.spec.Name, "err", err, "failures", in.fails)
	if in.spec.RestartPolicy < OnUnhealthy {
		in.st.RuntimeStatus, in.st.StatusDescription = "unhealthy", err.Error()
		s.changed()
		return
	}
	s.stopAll([]*instance{in})
	startedAt, _ := time.Parse(time.RFC3339Nano, in.st.LastStartTimeUtc)
	// -1: stopped by the supervisor, so the restart policy restarts it.
	s.exited(in, exitStatus{code: -1, err: fmt.Errorf("unhealthy (%v); stopped", err)}, startedAt)
	s.changed()
}
