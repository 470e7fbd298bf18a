package supervisor

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestDeployUpdateStopRemove(t *testing.T) {
	h := newHarness(t, nil)
	h.apply(1, map[string]any{"a": h.mod("sleep", nil), "b": h.mod("sleep", nil)})
	h.waitDesired(1, 200)
	a1 := h.waitStatus("a", "running")
	b1 := h.waitStatus("b", "running")

	// Changing a's env restarts a only.
	changed := h.mod("sleep", nil)
	changed["env"].(map[string]any)["X"] = map[string]any{"value": 1}
	h.apply(2, map[string]any{"a": changed, "b": h.mod("sleep", nil)})
	h.waitDesired(2, 200)
	a2 := h.waitFor("a restarted", func(r Report) bool { return r.Modules["a"].PID != a1.PID && r.Modules["a"].RuntimeStatus == "running" }).Modules["a"]
	if got := h.s.Status().Modules["b"].PID; got != b1.PID {
		t.Fatalf("b was restarted by a change to a: pid %d → %d", b1.PID, got)
	}
	waitGone(t, a1.PID)
	if ev := readLines(filepath.Join(h.home("a"), "events")); len(ev) != 1 || ev[0] != "term" {
		t.Fatalf("a was not stopped with SIGTERM: events %v", ev)
	}

	// status: stopped stops it; running again starts it.
	stopped := h.mod("sleep", map[string]any{"status": "stopped"})
	stopped["env"] = changed["env"]
	h.apply(3, map[string]any{"a": stopped, "b": h.mod("sleep", nil)})
	h.waitStatus("a", "stopped")
	waitGone(t, a2.PID)
	h.apply(4, map[string]any{"a": changed, "b": h.mod("sleep", nil)})
	h.waitFor("a running again", func(r Report) bool { return r.Modules["a"].RuntimeStatus == "running" && r.Modules["a"].PID != a2.PID })

	// Removing b stops it and drops it from the report.
	h.apply(5, map[string]any{"a": changed})
	h.waitFor("b removed", func(r Report) bool { _, ok := r.Modules["b"]; return !ok && r.LastDesiredVersion == 5 })
	waitGone(t, b1.PID)
}

func TestBackoffThenRecovery(t *testing.T) {
	h := newHarness(t, nil)
	m := h.mod("crash", nil)
	m["env"].(map[string]any)["SUPTEST_CRASHES"] = map[string]any{"value": "3"}
	h.apply(1, map[string]any{"c": m})
	st := h.waitFor("c up after 3 crashes", func(r Report) bool {
		return r.Modules["c"].RuntimeStatus == "running" && r.Modules["c"].RestartCount == 3
	}).Modules["c"]
	if st.ExitCode != 3 || st.LastExitTimeUtc == "" || st.LastRestartTimeUtc == "" {
		t.Fatalf("status after recovery: %+v", st)
	}
	h.waitFor("4 starts", func(Report) bool { return len(h.starts("c")) == 4 })
	var buf bytes.Buffer
	if err := h.s.Logs(context.Background(), "c", 0, false, &buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"crashing on purpose", "exited (exit code 3)", "hello from crash"} {
		if !strings.Contains(buf.String(), want) {
			t.Fatalf("log lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.BackoffUnit, o.BackoffMax = 100*time.Millisecond, 300*time.Millisecond })
	m := h.mod("exit", nil)
	m["env"].(map[string]any)["SUPTEST_CODE"] = map[string]any{"value": "1"}
	h.apply(1, map[string]any{"x": m})
	seen := map[int]string{} // restart count → backoff description
	h.waitFor("5 restarts", func(r Report) bool {
		st := r.Modules["x"]
		if st.RuntimeStatus == "backoff" {
			seen[st.RestartCount] = st.StatusDescription
		}
		return st.RestartCount >= 5
	})
	want := []string{"100ms", "200ms", "300ms", "300ms"}
	for i, w := range want {
		if !strings.HasSuffix(seen[i], "restarting in "+w) {
			t.Fatalf("backoff descriptions %v, want delays %v", seen, want)
		}
	}
}

func TestRestartPolicies(t *testing.T) {
	h := newHarness(t, nil)
	exit := func(policy, code string) map[string]any {
		m := h.mod("exit", map[string]any{"restartPolicy": policy})
		m["env"].(map[string]any)["SUPTEST_CODE"] = map[string]any{"value": code}
		return m
	}
	h.apply(1, map[string]any{
		"never1": exit("never", "1"), "onfail0": exit("on-failure", "0"),
		"onfail1": exit("on-failure", "1"), "always0": exit("always", "0"),
	})
	h.waitFor("restarts", func(r Report) bool {
		return r.Modules["onfail1"].RestartCount >= 2 && r.Modules["always0"].RestartCount >= 2
	})
	r := h.s.Status()
	if st := r.Modules["never1"]; st.RuntimeStatus != "failed" || st.RestartCount != 0 || st.ExitCode != 1 {
		t.Errorf("never, exit 1: %+v", st)
	}
	if st := r.Modules["onfail0"]; st.RuntimeStatus != "stopped" || st.RestartCount != 0 {
		t.Errorf("on-failure, exit 0: %+v", st)
	}
	if n := len(h.starts("never1")); n != 1 {
		t.Errorf("never: %d starts", n)
	}
	// A new deployment that changes another module does not revive them.
	h.apply(2, map[string]any{"never1": exit("never", "1"), "onfail0": exit("on-failure", "0")})
	h.waitDesired(2, 200)
	time.Sleep(200 * time.Millisecond)
	if n := len(h.starts("never1")); n != 1 {
		t.Errorf("never: restarted by an unrelated deployment (%d starts)", n)
	}
}

func TestBadDeploymentKeepsModulesRunning(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.Fetcher = fetcherFunc(func(string) ([]byte, error) { return []byte("not what was pushed"), nil })
	})
	h.apply(1, map[string]any{"a": h.mod("sleep", nil)})
	pid := h.waitStatus("a", "running").PID
	missing := filepath.Join(t.TempDir(), "nope")
	cases := []struct {
		name   string
		module map[string]any
		want   string
	}{
		{"unknown field", h.mod("sleep", map[string]any{"restartPolcy": "always"}), `modules.a: json: unknown field "restartPolcy"`},
		{"bad restart policy", h.mod("sleep", map[string]any{"restartPolicy": "sometimes"}), "modules.a.restartPolicy: \"sometimes\": must be one of never, on-failure, on-unhealthy, always"},
		{"missing image", h.mod("sleep", map[string]any{"settings": map[string]any{"image": missing}}), "modules.a.settings.image: image \"" + missing + "\": no such file or directory"},
		{"digest mismatch", h.mod("sleep", map[string]any{"settings": map[string]any{"image": "sha256:" + strings.Repeat("ab", 32)}}), "digest mismatch"},
		{"docker type", h.mod("sleep", map[string]any{"type": "docker"}), `modules.a.type: "docker" is not supported`},
		{"unknown createOptions", h.mod("sleep", map[string]any{"settings": map[string]any{"image": h.exe, "createOptions": `{"Cmd":[],"Privileged":true}`}}), `unknown field "Privileged"`},
		{"on-unhealthy without check", h.mod("sleep", map[string]any{"restartPolicy": "on-unhealthy"}), "on-unhealthy needs a health check"},
		{"pull policy never", h.mod("sleep", map[string]any{"imagePullPolicy": "never", "settings": map[string]any{"image": "sha256:" + strings.Repeat("cd", 32)}}), "not in the edge's cache and imagePullPolicy is never"},
	}
	for i, c := range cases {
		v := int64(10 + i)
		h.apply(v, map[string]any{"a": c.module})
		st := h.waitDesired(v, 400)
		if !strings.Contains(st.Description, c.want) {
			t.Errorf("%s: description %q, want it to contain %q", c.name, st.Description, c.want)
		}
		if got := h.s.Status().Modules["a"]; got.PID != pid || got.RuntimeStatus != "running" {
			t.Fatalf("%s: module disturbed: %+v", c.name, got)
		}
	}
	if len(h.starts("a")) != 1 {
		t.Fatalf("a was restarted: %v", h.starts("a"))
	}
}

type fetcherFunc func(digest string) ([]byte, error)

func (f fetcherFunc) FetchImage(_ context.Context, digest string, dst io.Writer) (int64, error) {
	b, err := f(digest)
	if err != nil {
		return 0, err
	}
	n, err := dst.Write(b)
	return int64(n), err
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestImageByDigestCachedForOfflineRestart(t *testing.T) {
	exe, _ := os.Executable()
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	digest := digestOf(bin)
	var mu sync.Mutex
	online, fetches := true, 0
	fetch := fetcherFunc(func(d string) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		if !online {
			return nil, errors.New("hub unreachable")
		}
		if d != digest {
			return nil, errors.New("404 no such image")
		}
		fetches++
		return bin, nil
	})
	h := newHarness(t, func(o *Options) { o.Fetcher = fetch })
	m := h.mod("sleep", map[string]any{"settings": map[string]any{"image": digest}})
	h.apply(1, map[string]any{"a": m})
	st := h.waitStatus("a", "running")
	if st.Settings.ImageHash != digest {
		t.Fatalf("imageHash %q", st.Settings.ImageHash)
	}
	h.stop()
	waitGone(t, st.PID)

	// The edge restarts with the hub unreachable: the module comes back
	// from the cache, without a deployment being sent again.
	mu.Lock()
	online = false
	mu.Unlock()
	h.open(func(o *Options) { o.Fetcher = fetch })
	h.waitStatus("a", "running")
	if fetches != 1 {
		t.Fatalf("%d fetches, want 1", fetches)
	}

	// A digest that is not cached while the hub is unreachable: 500,
	// retried, applied once the hub is back.
	other := append([]byte(nil), bin...)
	other = append(other, '\n')
	od := digestOf(other)
	fetch2 := fetcherFunc(func(d string) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		if !online {
			return nil, errors.New("hub unreachable")
		}
		return other, nil
	})
	h.s.images.fetch = fetch2
	h.apply(2, map[string]any{"a": m, "b": h.mod("sleep", map[string]any{"settings": map[string]any{"image": od}})})
	ds := h.waitDesired(2, 500)
	if !strings.Contains(ds.Description, "hub unreachable") || !strings.Contains(ds.Description, "retrying") {
		t.Fatalf("description %q", ds.Description)
	}
	mu.Lock()
	online = true
	mu.Unlock()
	h.waitDesired(2, 200)
	h.waitStatus("b", "running")
}

func TestArchiveImages(t *testing.T) {
	script := []byte("#!/bin/sh\necho \"archive module $1\"\ntrap 'exit 0' TERM\nwhile :; do sleep 0.05; done\n")
	dir := t.TempDir()
	tgz := tarGz(tarEntry{"bin/", 0o755, nil}, tarEntry{"bin/mod", 0o755, script}, tarEntry{"README", 0o644, []byte("hi")})
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	fh := &zip.FileHeader{Name: "mod.sh", Method: zip.Deflate}
	fh.SetMode(0o755)
	w, _ := zw.CreateHeader(fh)
	_, _ = w.Write(script)
	zw.Close()
	for name, data := range map[string][]byte{"m.tgz": tgz, "m.zip": zb.Bytes()} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h := newHarness(t, nil)
	h.apply(1, map[string]any{
		"t": h.mod("", map[string]any{"settings": map[string]any{"image": filepath.Join(dir, "m.tgz"), "createOptions": `{"Entrypoint":["bin/mod"],"Cmd":["tgz"]}`}}),
		"z": h.mod("", map[string]any{"settings": map[string]any{"image": filepath.Join(dir, "m.zip")}}),
	})
	h.waitStatus("t", "running")
	h.waitStatus("z", "running")
	for name, want := range map[string]string{"t": "archive module tgz", "z": "archive module "} {
		h.waitFor(name+" output", func(Report) bool {
			var b bytes.Buffer
			_ = h.s.Logs(context.Background(), name, 0, false, &b)
			return strings.Contains(b.String(), want)
		})
	}
	h.apply(2, map[string]any{"t": h.mod("", map[string]any{"settings": map[string]any{"image": filepath.Join(dir, "m.tgz"), "createOptions": `{"Entrypoint":["bin/nothere"]}`}})})
	if st := h.waitDesired(2, 400); !strings.Contains(st.Description, `the archive has no file "bin/nothere"`) {
		t.Fatalf("description %q", st.Description)
	}
}

func TestHealthCheckRestartsUnhealthyModule(t *testing.T) {
	h := newHarness(t, nil)
	check := `{"Healthcheck":{"Test":["CMD-SHELL","test ! -f $HOME/sick"],"Interval":50000000,"Retries":2}}`
	h.apply(1, map[string]any{"u": h.mod("sleep", map[string]any{"restartPolicy": "on-unhealthy",
		"settings": map[string]any{"image": h.exe, "createOptions": check}})})
	first := h.waitStatus("u", "running").PID
	if err := os.WriteFile(filepath.Join(h.home("u"), "sick"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h.waitFor("unhealthy restart", func(r Report) bool { return r.Modules["u"].RestartCount >= 1 })
	waitGone(t, first)
	os.Remove(filepath.Join(h.home("u"), "sick"))
	st := h.waitFor("healthy again", func(r Report) bool { return r.Modules["u"].RuntimeStatus == "running" }).Modules["u"]
	if st.PID == first {
		t.Fatal("same process")
	}
	var b bytes.Buffer
	_ = h.s.Logs(context.Background(), "u", 0, false, &b)
	if !strings.Contains(b.String(), "unhealthy: health check failed") {
		t.Fatalf("log:\n%s", b.String())
	}
}

func TestStopKillsIgnoringProcessAndItsChildren(t *testing.T) {
	h := newHarness(t, nil)
	h.apply(1, map[string]any{
		"stubborn": h.mod("ignoreterm", map[string]any{"settings": map[string]any{"image": h.exe, "createOptions": `{"StopTimeout":0}`}}),
		"parent":   h.mod("child", nil),
	})
	pid := h.waitStatus("stubborn", "running").PID
	h.waitStatus("parent", "running")
	var child int
	h.waitFor("child started", func(Report) bool {
		l := readLines(filepath.Join(h.home("parent"), "child"))
		if len(l) > 0 {
			child, _ = strconv.Atoi(l[0])
		}
		return child > 0
	})
	h.apply(2, map[string]any{})
	h.waitDesired(2, 200)
	waitGone(t, pid)
	waitGone(t, child)
}

func TestModuleEnvironment(t *testing.T) {
	t.Setenv("OUTPOST_EDGE_CONNECTION_STRING", "secret")
	h := newHarness(t, nil)
	m := h.mod("env", map[string]any{"settings": map[string]any{"image": h.exe, "createOptions": `{"Env":["FROM_CREATE=1"]}`}})
	m["env"].(map[string]any)["IOTEDGE_MODULEID"] = map[string]any{"value": "spoofed"}
	m["env"].(map[string]any)["USER_VAR"] = map[string]any{"value": true}
	h.apply(1, map[string]any{"e": m})
	h.waitStatus("e", "running")
	var env []string
	h.waitFor("env written", func(Report) bool { env = readLines(filepath.Join(h.home("e"), "env")); return len(env) > 0 })
	has := func(v string) bool {
		for _, e := range env {
			if e == v {
				return true
			}
		}
		return false
	}
	for _, want := range []string{"IOTEDGE_MODULEID=e", "IOTEDGE_DEVICEID=gw1", "USER_VAR=true", "FROM_CREATE=1", "HOME=" + h.home("e")} {
		if !has(want) {
			t.Errorf("env lacks %s: %v", want, env)
		}
	}
	if a := readLines(filepath.Join(h.home("e"), "argv0")); len(a) != 1 || a[0] != filepath.Base(h.exe) {
		t.Errorf("argv[0] %v, want the image's file name %s", a, filepath.Base(h.exe))
	}
	for _, e := range env {
		if strings.HasPrefix(e, "OUTPOST_EDGE_CONNECTION_STRING=") {
			t.Errorf("the edge's secret leaked into the module: %s", e)
		}
	}
}

func TestLogsBoundedAndFollowed(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxLogBytes = 64 << 10 })
	h.apply(1, map[string]any{"chatty": h.mod("chatty", nil)})
	h.waitStatus("chatty", "running")
	h.waitFor("all lines", func(Report) bool {
		var b bytes.Buffer
		_ = h.s.Logs(context.Background(), "chatty", 1, false, &b)
		return strings.Contains(b.String(), "line 1999 ")
	})
	var total int64
	for _, f := range []string{"current.log", "previous.log"} {
		st, err := os.Stat(filepath.Join(h.dir, "logs", "chatty", f))
		if err != nil {
			t.Fatal(err)
		}
		total += st.Size()
	}
	if total > 64<<10 {
		t.Fatalf("logs hold %d bytes, budget %d", total, 64<<10)
	}
	var tail bytes.Buffer
	_ = h.s.Logs(context.Background(), "chatty", 3, false, &tail)
	if n := strings.Count(tail.String(), "\n"); n != 3 {
		t.Fatalf("tail 3 gave %d lines:\n%s", n, tail.String())
	}

	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	go func() { _ = h.s.Logs(ctx, "chatty", 1, true, pw); pw.Close() }()
	lines := make(chan string, 100)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := pr.Read(buf)
			if n > 0 {
				lines <- string(buf[:n])
			}
			if err != nil {
				close(lines)
				return
			}
		}
	}()
	if err := h.s.RestartModule(context.Background(), "chatty"); err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	deadline := time.After(20 * time.Second)
	for !strings.Contains(got.String(), "restart requested") || !strings.Contains(got.String(), "line 1999 ") {
		select {
		case l := <-lines:
			got.WriteString(l)
		case <-deadline:
			t.Fatalf("follow did not see the restart; got %d bytes", got.Len())
		}
	}
	cancel()
	if err := h.s.RestartModule(context.Background(), "nosuch"); !errors.Is(err, ErrNoModule) {
		t.Fatalf("restart of an unknown module: %v", err)
	}
}

func TestStartupOrder(t *testing.T) {
	h := newHarness(t, nil)
	mods := map[string]any{}
	for i, order := range []int{3, 1, 2} {
		mods[fmt.Sprintf("m%d", i)] = h.mod("sleep", map[string]any{"startupOrder": order})
	}
	h.apply(1, mods)
	r := h.waitFor("all running", func(r Report) bool {
		for _, st := range r.Modules {
			if st.RuntimeStatus != "running" {
				return false
			}
		}
		return len(r.Modules) == 3
	})
	at := func(m string) time.Time {
		ts, err := time.Parse(time.RFC3339Nano, r.Modules[m].LastStartTimeUtc)
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	t1, t2, t0 := at("m1"), at("m2"), at("m0")
	if t2.Before(t1) || t0.Before(t2) {
		t.Fatalf("start times m1 %s, m2 %s, m0 %s: want startupOrder 1, 2, 3", t1, t2, t0)
	}
}

func TestResourceLimits(t *testing.T) {
	h := newHarness(t, nil)
	opts := `{"HostConfig":{"Memory":1073741824,"Ulimits":[{"Name":"nofile","Soft":123,"Hard":456}]}}`
	h.apply(1, map[string]any{"l": h.mod("sleep", map[string]any{"settings": map[string]any{"image": h.exe, "createOptions": opts}})})
	pid := h.waitStatus("l", "running").PID
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`Max address space\s+1073741824\s+1073741824\s+bytes`, `Max open files\s+123\s+456\s+files`} {
		if !regexp.MustCompile(want).Match(data) {
			t.Errorf("limits lack %s:\n%s", want, data)
		}
	}
}

// The edge restarts with the image file gone and hands the supervisor the
// same deployment again at once (as it does from its twin or file): the
// module runs from the cache, restored or re-applied.
func TestPathImageGoneRunsFromCache(t *testing.T) {
	img := filepath.Join(t.TempDir(), "module")
	exe, _ := os.Executable()
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, data, 0o755); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, nil)
	mods := map[string]any{"a": h.mod("sleep", map[string]any{"settings": map[string]any{"image": img}})}
	h.apply(1, mods)
	pid := h.waitStatus("a", "running").PID
	h.stop()
	waitGone(t, pid)
	if err := os.Remove(img); err != nil {
		t.Fatal(err)
	}
	h.open(nil)
	h.apply(1, mods)
	st := h.waitStatus("a", "running")
	if st.Settings.ImageHash != digestOf(data) {
		t.Fatalf("imageHash %s", st.Settings.ImageHash)
	}
	h.waitDesired(1, 200)
	// An image that was never in force is not stood in for.
	h.apply(2, map[string]any{"b": h.mod("sleep", map[string]any{"settings": map[string]any{"image": img + "-other"}})})
	h.waitDesired(2, 400)
}

// A deployment refused for a missing image is tried again when handed
// over again unchanged (the file may have been put in place since).
func TestRefusedDeploymentRetriedWhenHandedAgain(t *testing.T) {
	img := filepath.Join(t.TempDir(), "module")
	h := newHarness(t, nil)
	mods := map[string]any{"a": h.mod("sleep", map[string]any{"settings": map[string]any{"image": img}})}
	h.apply(1, mods)
	h.waitDesired(1, 400)
	exe, _ := os.Executable()
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, data, 0o755); err != nil {
		t.Fatal(err)
	}
	h.apply(1, mods)
	h.waitDesired(1, 200)
	h.waitStatus("a", "running")
}

// partialFetcher writes half an image, then fails as the link does when an
// answer grows past the size the hub announced.
type partialFetcher struct{}

func (partialFetcher) FetchImage(_ context.Context, digest string, dst io.Writer) (int64, error) {
	n, _ := dst.Write(bytes.Repeat([]byte("x"), 4096))
	return int64(n), fmt.Errorf("fetch image %s: after %d bytes: image larger than allowed", digest, n)
}

// TestFailedFetchLeavesNothing: a download that fails part way leaves no
// partial file in the image cache.
func TestFailedFetchLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	im := images{dir: dir, fetch: partialFetcher{}}
	_, err := im.resolve(context.Background(), "sha256:"+strings.Repeat("ab", 32), true)
	if err == nil || !strings.Contains(err.Error(), "larger than allowed") {
		t.Fatalf("resolve = %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the cache holds %v after a failed download", entries)
	}
}
