package supervisor

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary be a module: with SUPTEST_MODE set it
// behaves as the mode says (the supervisor runs it as a real process).
func TestMain(m *testing.M) {
	if mode := os.Getenv("SUPTEST_MODE"); mode != "" {
		os.Exit(fakeModule(mode))
	}
	os.Exit(m.Run())
}

func appendLine(name, line string) {
	f, err := os.OpenFile(filepath.Join(os.Getenv("HOME"), name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		panic(err)
	}
	fmt.Fprintln(f, line)
	f.Close()
}

func fakeModule(mode string) int {
	appendLine("starts", strconv.Itoa(os.Getpid()))
	fmt.Printf("hello from %s %d\n", mode, os.Getpid())
	term := make(chan os.Signal, 1)
	switch mode {
	case "ignoreterm":
		signal.Ignore(syscall.SIGTERM)
	default:
		signal.Notify(term, syscall.SIGTERM)
	}
	switch mode {
	case "exit":
		code, _ := strconv.Atoi(os.Getenv("SUPTEST_CODE"))
		return code
	case "crash":
		n := len(readLines(filepath.Join(os.Getenv("HOME"), "starts")))
		limit, _ := strconv.Atoi(os.Getenv("SUPTEST_CRASHES"))
		if n <= limit {
			fmt.Fprintln(os.Stderr, "crashing on purpose")
			return 3
		}
	case "env":
		appendLine("env", strings.Join(os.Environ(), "\n"))
		appendLine("argv0", os.Args[0])
		appendLine("args", strings.Join(os.Args[1:], " "))
	case "chatty":
		for i := 0; i < 2000; i++ {
			fmt.Printf("line %d of a chatty module, padded to make it longer than it needs to be\n", i)
		}
	case "probe":
		go probe(term)
	case "child":
		p, err := os.StartProcess("/bin/sleep", []string{"sleep", "1000"}, &os.ProcAttr{})
		if err != nil {
			return 9
		}
		appendLine("child", strconv.Itoa(p.Pid))
	}
	<-term
	appendLine("events", "term")
	return 0
}

// probe answers requests in $HOME/targets, one path a line ("w:" to open
// for writing), with a line each in $HOME/result: the path, then ok or the
// error. It runs until the module is stopped.
func probe(stop chan os.Signal) {
	home := os.Getenv("HOME")
	for {
		select {
		case <-stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
		data, err := os.ReadFile(filepath.Join(home, "targets"))
		if err != nil {
			continue
		}
		var out strings.Builder
		for _, target := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var err error
			if p, ok := strings.CutPrefix(target, "w:"); ok {
				var f *os.File
				if f, err = os.OpenFile(p, os.O_WRONLY, 0); err == nil {
					f.Close()
				}
			} else {
				_, err = os.ReadFile(target)
			}
			res := "ok"
			if e := errors.Unwrap(err); e != nil {
				res = e.Error()
			} else if err != nil {
				res = err.Error()
			}
			fmt.Fprintf(&out, "%s\t%s\n", target, res)
		}
		_ = os.Remove(filepath.Join(home, "targets"))
		_ = os.WriteFile(filepath.Join(home, "result.tmp"), []byte(out.String()), 0o600)
		_ = os.Rename(filepath.Join(home, "result.tmp"), filepath.Join(home, "result"))
	}
}

func readLines(path string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return strings.Fields(string(data))
}

// harness runs a Supervisor on a temporary directory.
type harness struct {
	t      *testing.T
	s      *Supervisor
	dir    string
	exe    string
	cancel context.CancelFunc
	done   chan error
}

func newHarness(t *testing.T, change func(*Options)) *harness {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: t.TempDir(), exe: exe}
	h.open(change)
	return h
}

func (h *harness) open(change func(*Options)) {
	opts := Options{
		Dir:         h.dir,
		BackoffUnit: 50 * time.Millisecond, BackoffMax: 400 * time.Millisecond,
		StopGrace: 2 * time.Second, RetryApply: 100 * time.Millisecond,
		Env: func(m string) ([]string, error) {
			return []string{"IOTEDGE_MODULEID=" + m, "IOTEDGE_DEVICEID=gw1"}, nil
		},
	}
	if change != nil {
		change(&opts)
	}
	s, err := New(opts)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.s, h.cancel, h.done = s, cancel, make(chan error, 1)
	go func() { h.done <- s.Run(ctx) }()
	h.t.Cleanup(h.stop)
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case <-h.done:
	case <-time.After(20 * time.Second):
		h.t.Error("supervisor did not stop")
	}
}

// mod is a module running the test binary in a mode.
func (h *harness) mod(mode string, extra map[string]any) map[string]any {
	m := map[string]any{
		"type": "process", "restartPolicy": "always",
		"env":      map[string]any{"SUPTEST_MODE": map[string]any{"value": mode}},
		"settings": map[string]any{"image": h.exe},
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func (h *harness) apply(version int64, modules map[string]any) {
	h.t.Helper()
	data, err := json.Marshal(map[string]any{"schemaVersion": "1.1", "modules": modules, "$version": version})
	if err != nil {
		h.t.Fatal(err)
	}
	h.s.Apply(data, version)
}

// waitFor polls the report until ok holds.
func (h *harness) waitFor(what string, ok func(Report) bool) Report {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := h.s.Status()
		if ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(r, "", "  ")
			h.t.Fatalf("timed out waiting for %s; report:\n%s", what, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *harness) waitStatus(name, status string) ModuleStatus {
	h.t.Helper()
	r := h.waitFor(name+" "+status, func(r Report) bool { return r.Modules[name].RuntimeStatus == status })
	return r.Modules[name]
}

func (h *harness) waitDesired(version int64, code int) DesiredStatus {
	h.t.Helper()
	r := h.waitFor(fmt.Sprintf("desired version %d code %d", version, code), func(r Report) bool {
		return r.LastDesiredVersion == version && r.LastDesiredStatus.Code == code
	})
	return r.LastDesiredStatus
}

func (h *harness) home(name string) string { return filepath.Join(h.dir, "run", name) }

func (h *harness) starts(name string) []string {
	return readLines(filepath.Join(h.home(name), "starts"))
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still running", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tarEntry is one entry of a test archive: a directory when its name ends
// in "/", else a regular file holding body.
type tarEntry struct {
	name string
	mode int64
	body []byte
}

// tarGz makes a gzip-compressed tar archive of entries, in order.
func tarGz(entries ...tarEntry) []byte {
	var b bytes.Buffer
	gz := gzip.NewWriter(&b)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: tar.TypeReg, Mode: e.mode, Size: int64(len(e.body))}
		if strings.HasSuffix(e.name, "/") {
			h.Typeflag = tar.TypeDir
		}
		_ = tw.WriteHeader(h)
		_, _ = tw.Write(e.body)
	}
	tw.Close()
	gz.Close()
	return b.Bytes()
}
