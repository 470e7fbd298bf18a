package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/localapi"
)

// TestEdgeInMemoryCgroup runs the real binary in a new cgroup limited to
// 64 MiB (v2 memory.max, else v1 memory.limit_in_bytes) and checks that
// `outpost edge status` names the cgroup as the budget's source and shows
// the sizes it set. It needs a writable cgroup (root); CI runs as root, so
// there (CI or OUTPOST_BROWSER_TESTS=1) a machine without one fails the
// test instead of skipping it.
func TestEdgeInMemoryCgroup(t *testing.T) {
	cg, err := newMemoryCgroup(t, 64<<20)
	if err != nil {
		if os.Getenv("CI") != "" || os.Getenv("OUTPOST_BROWSER_TESTS") == "1" {
			t.Fatalf("no writable memory cgroup (v2 or v1), which CI must have (it runs as root): %v", err)
		}
		t.Skipf("skipped: no writable memory cgroup here (needs root and cgroup v2 with the memory controller, or v1): %v", err)
	}
	t.Logf("edge in %s", cg.source)
	bin := buildOutpost(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "edge")
	csFile := filepath.Join(dir, "cs")
	cs := "HostName=hub.example;DeviceId=gw1;SharedAccessKey=" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	if err := os.WriteFile(csFile, []byte(cs+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The shell joins the cgroup, then becomes the edge: the edge reads
	// /proc/self/cgroup at start, inside the cgroup.
	edge := exec.Command("sh", "-c", `echo $$ > "$0" && exec "$@"`, cg.procs, bin, "edge", "--data", data,
		"--connection-string-file", csFile, "--hub-url", "off", "--mqtt", "127.0.0.1:0", "--api", "127.0.0.1:0", "--log-level", "warn")
	edge.Env = withoutEnv(os.Environ(), "GOMEMLIMIT")
	var stderr strings.Builder
	edge.Stderr = &stderr
	if err := edge.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- edge.Wait() }()
	defer func() {
		_ = edge.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = edge.Process.Kill()
			<-exited
		}
	}()
	waitReady(t, data, exited, &stderr)

	out, err := exec.Command(bin, "edge", "status", "--data", data).CombinedOutput()
	if err != nil {
		t.Fatalf("outpost edge status: %v\n%s", err, out)
	}
	want := fmt.Sprintf("memory: budget 64MiB (%s); Go memory limit 40MiB (budget); Badger memtables 2 × 2MiB, tables 1MiB, block cache 1MiB, index cache 512KiB\n", cg.source)
	if !strings.Contains(string(out), want) {
		t.Errorf("outpost edge status in a 64 MiB cgroup:\n%s\nwant the line\n%s", out, want)
	}
	out, err = exec.Command(bin, "edge", "status", "--data", data, "-o", "json").Output()
	if err != nil {
		t.Fatalf("outpost edge status -o json: %v", err)
	}
	var st localapi.Status
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatal(err)
	}
	if m := st.Memory; m.Budget != 64<<20 || m.Source != cg.source || m.GoLimit != 40<<20 || m.MemTableSize != 2<<20 {
		t.Errorf("/status memory %+v: want the 64 MiB budget from %s, a 32 MiB Go limit and 2 MiB memtables", m, cg.source)
	}
}

type memoryCgroup struct {
	procs  string // the file a process joins it by
	source string // how the edge names its limit file
}

// newMemoryCgroup makes a cgroup limited to limit bytes, removed when the
// test ends: cgroup v2 under the root of /sys/fs/cgroup when it delegates
// the memory controller there, else cgroup v1 under this process's memory
// cgroup.
func newMemoryCgroup(t *testing.T, limit int64) (memoryCgroup, error) {
	name := fmt.Sprintf("outpost-test-%d", os.Getpid())
	v2, errV2 := tryCgroup(t, filepath.Join("/sys/fs/cgroup", name), "memory.max", limit)
	if errV2 == nil {
		return memoryCgroup{procs: filepath.Join(v2, "cgroup.procs"), source: "cgroup v2 " + filepath.Join(v2, "memory.max")}, nil
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return memoryCgroup{}, errors.Join(errV2, err)
	}
	errV1 := errors.New("no memory controller in /proc/self/cgroup")
	for line := range strings.Lines(string(self)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) == 3 && strings.Contains(","+parts[1]+",", ",memory,") {
			var v1 string
			if v1, errV1 = tryCgroup(t, filepath.Join("/sys/fs/cgroup/memory", parts[2], name), "memory.limit_in_bytes", limit); errV1 == nil {
				return memoryCgroup{procs: filepath.Join(v1, "cgroup.procs"), source: "cgroup v1 " + filepath.Join(v1, "memory.limit_in_bytes")}, nil
			}
		}
	}
	return memoryCgroup{}, fmt.Errorf("cgroup v2: %w; cgroup v1: %w", errV2, errV1)
}

// tryCgroup makes dir and writes limit to its file, which the kernel
// must have made (no file is created: a plain directory is no cgroup); it
// removes dir when the test ends (after the edge stopped: cleanups run
// last first).
func tryCgroup(t *testing.T, dir, file string, limit int64) (string, error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", err
	}
	f, err := os.OpenFile(filepath.Join(dir, file), os.O_WRONLY, 0)
	if err == nil {
		_, err = fmt.Fprint(f, limit)
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		_ = os.Remove(dir)
		return "", err
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Logf("remove cgroup %s: %v", dir, err)
		}
	})
	return dir, nil
}

// buildOutpost builds cmd/outpost into the test's temporary directory.
func buildOutpost(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "outpost")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/outpost: %v\n%s", err, out)
	}
	return bin
}

func withoutEnv(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// waitReady waits for the edge's ready.json, or fails with its stderr
// when it exits first.
func waitReady(t *testing.T, data string, exited <-chan error, stderr *strings.Builder) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(data, "ready.json")); err == nil {
			return
		}
		select {
		case err := <-exited:
			t.Fatalf("the edge exited before it was ready: %v\n%s", err, stderr.String())
		case <-deadline:
			t.Fatalf("the edge wrote no ready.json in 30 s\n%s", stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
