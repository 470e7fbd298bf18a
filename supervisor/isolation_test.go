package supervisor

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testUIDs is far from the default range, so a test never meets a module
// of an edge running on the same machine.
var testUIDs = UIDRange{First: 62100, Last: 62199}

// newIsolatedHarness runs a supervisor that gives modules their own uids.
// Its directory must be reachable by them: t.TempDir's parent is not.
func newIsolatedHarness(t *testing.T, change func(*Options)) *harness {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("modules run under their own uids only when the edge is root")
	}
	// The edge's supplementary groups must not reach its modules: give it
	// one to leak.
	old, err := syscall.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setgroups([]int{4242}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Setgroups(old) })
	dir, err := os.MkdirTemp("", "suptest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: filepath.Join(dir, "modules"), exe: exe}
	h.open(func(o *Options) {
		o.ModuleUIDs = testUIDs
		if change != nil {
			change(o)
		}
	})
	return h
}

// ids returns the Uid, Gid and Groups lines of /proc/pid/status.
func ids(t *testing.T, pid int) (uid, gid, groups string) {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(l, ":")
		switch k {
		case "Uid":
			uid = strings.Join(strings.Fields(v), " ")
		case "Gid":
			gid = strings.Join(strings.Fields(v), " ")
		case "Groups":
			groups = strings.TrimSpace(v)
		}
	}
	return uid, gid, groups
}

// ask has module m's probe try each target and returns target → outcome
// ("ok" or the error).
func (h *harness) ask(m string, targets ...string) map[string]string {
	h.t.Helper()
	result := filepath.Join(h.home(m), "result")
	os.Remove(result)
	// Written aside and renamed: the probe must not read half of it.
	tmp := filepath.Join(h.home(m), "targets.tmp")
	if err := os.WriteFile(tmp, []byte(strings.Join(targets, "\n")), 0o644); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(h.home(m), "targets")); err != nil {
		h.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, err := os.ReadFile(result)
		if err == nil {
			out := map[string]string{}
			for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				k, v, _ := strings.Cut(l, "\t")
				out[k] = v
			}
			return out
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("module %s did not answer its probe", m)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func owner(t *testing.T, path string) string {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	return fmt.Sprintf("%d:%d", sys.Uid, sys.Gid)
}

// Each module runs under its own uid and gid, without supplementary
// groups, and cannot read another module's environment, directory or
// output, the supervisor's records, or change its own image; it can read
// its own environment.
func TestModulesRunUnderTheirOwnUIDs(t *testing.T) {
	h := newIsolatedHarness(t, nil)
	h.apply(1, map[string]any{"a": h.mod("probe", nil), "b": h.mod("probe", nil)})
	a, b := h.waitStatus("a", "running"), h.waitStatus("b", "running")
	if a.User == "" || a.User == b.User || strings.HasPrefix(a.User, "0:") {
		t.Fatalf("users a %q b %q: want two of the range", a.User, b.User)
	}
	for _, st := range []ModuleStatus{a, b} {
		id, _, _ := strings.Cut(st.User, ":")
		uid, gid, groups := ids(t, st.PID)
		if want := strings.Repeat(id+" ", 3) + id; uid != want || gid != want {
			t.Errorf("pid %d runs as Uid %q Gid %q, want %s", st.PID, uid, gid, want)
		}
		if groups != "" {
			t.Errorf("pid %d has supplementary groups %q", st.PID, groups)
		}
	}
	if got := owner(t, h.home("a")); got != a.User {
		t.Errorf("a's directory belongs to %s, want %s", got, a.User)
	}
	h.waitFor("b logged", func(Report) bool {
		_, err := os.Stat(filepath.Join(h.dir, "logs", "b", "current.log"))
		return err == nil
	})
	denied := []string{
		fmt.Sprintf("/proc/%d/environ", b.PID),
		filepath.Join(h.home("b"), "starts"),
		filepath.Join(h.dir, "logs", "b", "current.log"),
		filepath.Join(h.dir, "applied.json"),
		filepath.Join(h.dir, "uids.json"),
		"w:" + h.s.images.blob(h.s.Status().Modules["a"].Settings.ImageHash),
	}
	own := []string{"/proc/self/environ", filepath.Join(h.home("a"), "starts")}
	got := h.ask("a", append(denied, own...)...)
	for _, p := range denied {
		if got[p] != "permission denied" {
			t.Errorf("module a reading %s: %q, want permission denied", p, got[p])
		}
	}
	for _, p := range own {
		if got[p] != "ok" {
			t.Errorf("module a reading its own %s: %q, want ok", p, got[p])
		}
	}
}

// A health check runs as its module.
func TestHealthCheckRunsAsTheModule(t *testing.T) {
	h := newIsolatedHarness(t, nil)
	check := `{"Healthcheck":{"Test":["CMD-SHELL","id -u > $HOME/check-uid; id -G > $HOME/check-groups"],"Interval":50000000}}`
	h.apply(1, map[string]any{"c": h.mod("sleep", map[string]any{"settings": map[string]any{"image": h.exe, "createOptions": check}})})
	st := h.waitStatus("c", "running")
	uid, gid, _ := strings.Cut(st.User, ":")
	var lines []string
	h.waitFor("health check ran", func(Report) bool {
		lines = readLines(filepath.Join(h.home("c"), "check-uid"))
		return len(lines) > 0
	})
	if lines[0] != uid {
		t.Fatalf("health check ran as uid %s, want %s", lines[0], uid)
	}
	h.waitFor("groups written", func(Report) bool {
		lines = readLines(filepath.Join(h.home("c"), "check-groups"))
		return len(lines) > 0
	})
	if strings.Join(lines, " ") != gid {
		t.Fatalf("health check ran with groups %v, want only %s", lines, gid)
	}
}

// A module keeps its uid across restarts of the supervisor; a uid once
// recorded is not given to another module, also after its module is gone
// and the supervisor restarted.
func TestModuleUIDsStableAndNotReused(t *testing.T) {
	h := newIsolatedHarness(t, nil)
	h.apply(1, map[string]any{"a": h.mod("sleep", nil), "b": h.mod("sleep", nil)})
	a, b := h.waitStatus("a", "running").User, h.waitStatus("b", "running").User
	h.stop()
	// The next run starts with a deployment without a: b first.
	if err := os.Remove(filepath.Join(h.dir, "applied.json")); err != nil {
		t.Fatal(err)
	}
	h.open(func(o *Options) { o.ModuleUIDs = testUIDs })
	h.apply(2, map[string]any{"b": h.mod("sleep", nil), "c": h.mod("sleep", nil)})
	h.waitDesired(2, 200)
	if got := h.waitStatus("b", "running").User; got != b {
		t.Errorf("after a restart b runs as %s, was %s", got, b)
	}
	if c := h.waitStatus("c", "running").User; c == a || c == b {
		t.Errorf("new module c got %s, a uid recorded for another module (a %s, b %s)", c, a, b)
	}
	st, err := os.Stat(filepath.Join(h.dir, "uids.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("uids.json: %v %v, want mode 0600", st.Mode(), err)
	}
	var f uidFile
	data, _ := os.ReadFile(filepath.Join(h.dir, "uids.json"))
	if err := json.Unmarshal(data, &f); err != nil || len(f.Modules) != 3 {
		t.Fatalf("uids.json %s: %v", data, err)
	}
}

// createOptions.User is Docker's: uid, uid:gid, name, name:group.
func TestCreateOptionsUser(t *testing.T) {
	etc := t.TempDir()
	passwd, group := filepath.Join(etc, "passwd"), filepath.Join(etc, "group")
	os.WriteFile(passwd, []byte("root:x:0:0::/root:/bin/sh\nsvc:x:62500:62501::/:/bin/false\n62510:x:62520:62521::/:/bin/false\n"), 0o644)
	os.WriteFile(group, []byte("grp:x:62600:\n"), 0o644)
	h := newIsolatedHarness(t, func(o *Options) { o.PasswdFile, o.GroupFile = passwd, group })
	cases := map[string]struct{ user, want string }{
		"uid":       {"62700", "62700:62700"},
		"uidgid":    {"62700:62701", "62700:62701"},
		"name":      {"svc", "62500:62501"},
		"namegroup": {"svc:grp", "62500:62600"},
		"uidgroup":  {"62700:grp", "62700:62600"},
		"root":      {"0", "0:0"},
	}
	mods := map[string]any{}
	for name, c := range cases {
		mods[name] = h.mod("sleep", map[string]any{"settings": map[string]any{"image": h.exe, "createOptions": `{"User":"` + c.user + `"}`}})
	}
	mods["nosuch"] = h.mod("sleep", map[string]any{"settings": map[string]any{"image": h.exe, "createOptions": `{"User":"nosuch"}`}})
	h.apply(1, mods)
	for name, c := range cases {
		st := h.waitStatus(name, "running")
		uid, gid, _ := ids(t, st.PID)
		u, g, _ := strings.Cut(c.want, ":")
		if st.User != c.want || !strings.HasPrefix(uid, u+" ") || !strings.HasPrefix(gid, g+" ") {
			t.Errorf("User %q: runs as %s (Uid %s, Gid %s), want %s", c.user, st.User, uid, gid, c.want)
		}
	}
	st := h.waitStatus("nosuch", "failed")
	if !strings.Contains(st.StatusDescription, `not started: createOptions.User "nosuch": no user "nosuch" in `+passwd) {
		t.Errorf("unknown user: %q", st.StatusDescription)
	}
	var b strings.Builder
	_ = h.s.Logs(h.s.ctx, "root", 0, false, &b)
	if !strings.Contains(b.String(), "module runs with uid 0 gid 0") {
		t.Errorf("no warning for a module running as root:\n%s", b.String())
	}
}

// An edge that is not root cannot switch user: a module with User is not
// started, and says why; the others run.
func TestUserRefusedWithoutModuleUIDs(t *testing.T) {
	h := newHarness(t, nil)
	h.apply(1, map[string]any{
		"u":     h.mod("sleep", map[string]any{"settings": map[string]any{"image": h.exe, "createOptions": `{"User":"1234"}`}}),
		"other": h.mod("sleep", nil),
	})
	st := h.waitStatus("u", "failed")
	if !strings.Contains(st.StatusDescription, `createOptions.User "1234": cannot switch user: the edge is not root`) {
		t.Errorf("status %q", st.StatusDescription)
	}
	if h.waitStatus("other", "running").User != "" {
		t.Error("a module of an edge without module uids reports a user")
	}
}

// A data directory modules cannot reach is said so, instead of failing
// each start with "permission denied".
func TestUnreachableDirSaysSo(t *testing.T) {
	h := newIsolatedHarness(t, nil)
	parent := filepath.Dir(h.dir)
	if err := os.Chmod(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	h.apply(1, map[string]any{"a": h.mod("sleep", nil)})
	st := h.waitStatus("a", "failed")
	if !strings.Contains(st.StatusDescription, "cannot reach "+h.dir+": "+parent+" is -rwx------") {
		t.Errorf("status %q", st.StatusDescription)
	}
}

// An archive image is unpacked so that modules under their own uids can
// run and read it, whatever modes the archive gives, and cannot change it.
func TestArchiveImageReadableNotWritable(t *testing.T) {
	h := newIsolatedHarness(t, nil)
	script := []byte(`#!/bin/sh
d=$(dirname "$0")
{ cat "$d/conf" >/dev/null 2>&1 && echo read ok || echo read denied
  ( : >> "$0" ) 2>/dev/null && echo write ok || echo write denied
  ( : > "$d/new" ) 2>/dev/null && echo create ok || echo create denied
} > "$HOME/result"
trap 'exit 0' TERM
while :; do sleep 0.05; done
`)
	tgz := tarGz(tarEntry{"bin/", 0o700, nil}, tarEntry{"bin/mod", 0o700, script}, tarEntry{"bin/conf", 0o600, []byte("hi")})
	img := filepath.Join(filepath.Dir(h.dir), "m.tgz")
	if err := os.WriteFile(img, tgz, 0o644); err != nil {
		t.Fatal(err)
	}
	h.apply(1, map[string]any{"t": h.mod("", map[string]any{"settings": map[string]any{"image": img, "createOptions": `{"Entrypoint":["bin/mod"]}`}})})
	h.waitStatus("t", "running")
	var got []string
	h.waitFor("result", func(Report) bool {
		data, _ := os.ReadFile(filepath.Join(h.home("t"), "result"))
		got = strings.Split(strings.TrimSpace(string(data)), "\n")
		return len(got) == 3
	})
	if want := []string{"read ok", "write denied", "create denied"}; strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Fatalf("the module's own archive: %q, want %q", got, want)
	}
}

// Allocation skips uid 0, the edge's uid and the uids and gids the system
// uses, and says when the range is full.
func TestAllocationSkipsSystemIDs(t *testing.T) {
	dir := t.TempDir()
	passwd, group := filepath.Join(dir, "passwd"), filepath.Join(dir, "group")
	os.WriteFile(passwd, []byte("svc:x:62100:62100::/:/bin/false\n"), 0o644)
	os.WriteFile(group, []byte("dialout:x:62101:\n"), 0o644)
	u, err := openUsers(filepath.Join(dir, "uids.json"), Options{ModuleUIDs: UIDRange{First: 62100, Last: 62103},
		PasswdFile: passwd, GroupFile: group, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	u.edgeUID = 62102 // as if the edge ran under it
	cred, _, err := u.credential("a", "")
	if err != nil || cred.Uid != 62103 || cred.Gid != 62103 || len(cred.Groups) != 0 {
		t.Fatalf("a got %+v, %v; want 62103:62103 without groups", cred, err)
	}
	if _, _, err := u.credential("b", ""); err == nil || !strings.Contains(err.Error(), "no free uid in the module range 62100-62103") {
		t.Fatalf("full range: %v", err)
	}
}
