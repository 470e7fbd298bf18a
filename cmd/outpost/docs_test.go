package main

import (
	"bufio"
	"encoding/base64"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/identity/sas"
)

// TestDocumentedStartsKeepKeysOffCmdline runs the systemd units and the
// configuration file of docs/operations.md ("Keys off the command line") as
// written there, with real processes, and checks that no process's command
// line holds a key; and that the scan finds a key given with
// --connection-string, so it would notice. What changes from the page:
// /etc/outpost and /var/lib/outpost move under a temporary directory,
// listen ports become :0, the edge's --api takes a free port, and
// CREDENTIALS_DIRECTORY is set as systemd sets it (systemd itself is not
// here).
func TestDocumentedStartsKeepKeysOffCmdline(t *testing.T) {
	if testing.Short() {
		t.Skip("starts hubs and edges")
	}
	bin, err := exec.LookPath("outpost")
	if err != nil {
		t.Fatal(err)
	}
	blocks := fencedBlocks(t, "../../docs/operations.md")
	d := &docRun{t: t, root: t.TempDir(), bin: bin}
	d.units(blocks)
	d.configFile(blocks)
	d.argv()
}

// units runs the hub's and the edge's systemd units.
func (d *docRun) units(blocks []string) {
	t := d.t
	ownerKey := base64.StdEncoding.EncodeToString(sas.GenerateKey())
	edgeKey := base64.StdEncoding.EncodeToString(sas.GenerateKey())
	d.write("/etc/outpost/hub.owner-key", ownerKey+"\n")
	d.write("/etc/outpost/edge.connection-string", "HostName=hub.example.com;DeviceId=gw1;SharedAccessKey="+edgeKey+"\n")
	hub := d.startUnit(block(t, blocks, "# /etc/systemd/system/outpost-hub.service"), "hub listening")
	defer hub.stop()
	hubCA, err := os.ReadFile(d.path("/var/lib/outpost/hub/certs/ca.pem"))
	if err != nil {
		t.Fatalf("the hub on :8443 made no CA of its own: %v", err)
	}
	d.write("/etc/outpost/hub-ca.pem", string(hubCA))
	edge := d.startUnit(block(t, blocks, "# /etc/systemd/system/outpost-edge.service"), "edge ready")
	defer edge.stop()
	checkCmdlines(t, ownerKey, edgeKey)
	for _, p := range []*proc{hub, edge} {
		if w := p.stderrText(); strings.Contains(w, "warning:") {
			t.Errorf("%s warned: %s", p.name, w)
		}
	}
	// An edge running as root keeps its data directory 0711 so modules
	// under their own uids reach their images (docs/operations.md, "Modules
	// and users"); every private part inside stays 0700/0600.
	edgeDir := os.FileMode(0o700)
	if os.Geteuid() == 0 {
		edgeDir = 0o711
	}
	checkModes(t, map[string]os.FileMode{
		d.path("/var/lib/outpost/edge"): edgeDir, d.path("/var/lib/outpost/edge/store"): 0o700, d.path("/var/lib/outpost/edge/certs/ca-key.pem"): 0o600,
		d.path("/var/lib/outpost/edge/certs/server-key.pem"): 0o600, d.path("/var/lib/outpost/edge/certs/ca.pem"): 0o644,
		d.path("/var/lib/outpost/hub"): 0o700, d.path("/var/lib/outpost/hub/certs/ca-key.pem"): 0o600,
	})
}

// configFile runs the edge with the page's configuration file.
func (d *docRun) configFile(blocks []string) {
	t := d.t
	cmd := regexp.MustCompile(`(?m)^outpost edge --config (\S+)$`).FindStringSubmatch(strings.Join(blocks, "\n"))
	if cmd == nil {
		t.Fatal("docs/operations.md: no `outpost edge --config FILE` line")
	}
	key := base64.StdEncoding.EncodeToString(sas.GenerateKey())
	toml := strings.ReplaceAll(block(t, blocks, "# "+cmd[1]), "<base64 key>", key)
	toml = regexp.MustCompile(`"(:\d+)"`).ReplaceAllString(toml, `":0"`)
	d.write(cmd[1], d.paths(toml))
	p := d.start("edge --config", []string{"edge", "--config", d.path(cmd[1]), "--api", "127.0.0.1:0"}, nil, "edge ready")
	defer p.stop()
	checkCmdlines(t, key)
	if w := p.stderrText(); strings.Contains(w, "warning:") {
		t.Errorf("edge --config warned: %s", w)
	}
}

// argv starts an edge with the key in its command line: the scan finds it
// (so it would notice), and the edge warns.
func (d *docRun) argv() {
	t := d.t
	key := base64.StdEncoding.EncodeToString(sas.GenerateKey())
	p := d.start("edge --connection-string", []string{"edge", "--data", filepath.Join(d.root, "argv"), "--connection-string",
		"HostName=hub.example.com;DeviceId=gw1;SharedAccessKey=" + key, "--hub-url", "off", "--mqtt", "127.0.0.1:0", "--api", "127.0.0.1:0"}, nil, "edge ready")
	defer p.stop()
	if pids := cmdlinesWith(key); len(pids) == 0 {
		t.Error("the scan of /proc/*/cmdline does not find a key given with --connection-string: it proves nothing")
	}
	if w := p.stderrText(); !strings.Contains(w, "warning: --connection-string puts a key in the command line") {
		t.Errorf("no warning for a key in argv: %s", w)
	}
}

// fencedBlocks returns the contents of the ``` blocks of a Markdown file.
func fencedBlocks(t *testing.T, path string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	var cur []string
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "```") && !in:
			in, cur = true, nil
		case strings.HasPrefix(line, "```"):
			in = false
			blocks = append(blocks, strings.Join(cur, "\n"))
		case in:
			cur = append(cur, line)
		}
	}
	return blocks
}

// block returns the fenced block whose first line is first, or first and
// a remark after a space.
func block(t *testing.T, blocks []string, first string) string {
	t.Helper()
	for _, b := range blocks {
		if l := strings.SplitN(b, "\n", 2)[0]; l == first || strings.HasPrefix(l, first+" ") {
			return b
		}
	}
	t.Fatalf("docs/operations.md: no block starting %q", first)
	return ""
}

type docRun struct {
	t    *testing.T
	root string
	bin  string
}

// path moves an absolute path of the page under the temporary root.
func (d *docRun) path(p string) string { return filepath.Join(d.root, p) }

// paths moves /etc/outpost and /var/lib/outpost in s under the root.
func (d *docRun) paths(s string) string {
	for _, p := range []string{"/etc/outpost/", "/var/lib/outpost/"} {
		s = strings.ReplaceAll(s, p, d.path(p)+"/")
	}
	return s
}

func (d *docRun) write(p, data string) {
	d.t.Helper()
	if err := os.MkdirAll(filepath.Dir(d.path(p)), 0o755); err != nil {
		d.t.Fatal(err)
	}
	if err := os.WriteFile(d.path(p), []byte(data), 0o600); err != nil {
		d.t.Fatal(err)
	}
}

// startUnit runs a unit's ExecStart as systemd would after copying its
// LoadCredential= files into a credentials directory.
func (d *docRun) startUnit(unit, ready string) *proc {
	d.t.Helper()
	creds := d.t.TempDir()
	var exec string
	for _, line := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(line, "LoadCredential="); ok {
			id, src, _ := strings.Cut(v, ":")
			data, err := os.ReadFile(d.path(src))
			if err != nil {
				d.t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(creds, id), data, 0o400); err != nil {
				d.t.Fatal(err)
			}
		}
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			exec = v
		}
	}
	args := strings.Fields(exec)
	if len(args) < 2 || args[0] != "/usr/local/bin/outpost" {
		d.t.Fatalf("ExecStart=%s: want /usr/local/bin/outpost …", exec)
	}
	args = args[1:]
	for i, a := range args {
		a = os.Expand(a, func(k string) string {
			if k == "CREDENTIALS_DIRECTORY" {
				return creds
			}
			d.t.Fatalf("ExecStart uses ${%s}", k)
			return ""
		})
		if regexp.MustCompile(`^:\d+$`).MatchString(a) {
			a = ":0"
		}
		args[i] = d.paths(a)
	}
	if args[0] == "edge" {
		args = append(args, "--api", "127.0.0.1:0")
	}
	return d.start(args[0]+" unit", args, []string{"CREDENTIALS_DIRECTORY=" + creds}, ready)
}

// proc is a running outpost.
type proc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr strings.Builder
}

func (d *docRun) start(name string, args, env []string, ready string) *proc {
	d.t.Helper()
	p := &proc{t: d.t, name: name, cmd: exec.Command(d.bin, args...)}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = writerFunc(func(b []byte) (int, error) { p.mu.Lock(); defer p.mu.Unlock(); return p.stderr.Write(b) })
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		d.t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(p.stop)
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				d.t.Fatalf("%s exited before %q: %s", name, ready, p.stderrText())
			}
			if strings.Contains(line, ready) {
				go func() { _, _ = io.Copy(io.Discard, out) }()
				go func() {
					for range lines {
					}
				}()
				return p
			}
		case <-timeout:
			d.t.Fatalf("%s: no %q in 60s: %s", name, ready, p.stderrText())
		}
	}
}

func (p *proc) stderrText() string { p.mu.Lock(); defer p.mu.Unlock(); return p.stderr.String() }

func (p *proc) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
		p.t.Errorf("%s did not stop on SIGTERM in 20s", p.name)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// checkCmdlines fails the test for every process whose command line holds
// one of keys.
func checkCmdlines(t *testing.T, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if pids := cmdlinesWith(k); len(pids) > 0 {
			t.Errorf("a key is in the command line of processes %v", pids)
		}
	}
}

func cmdlinesWith(key string) []string {
	entries, _ := os.ReadDir("/proc")
	var pids []string
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(data), key) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

func checkModes(t *testing.T, want map[string]os.FileMode) {
	t.Helper()
	for path, mode := range want {
		fi, err := os.Stat(path)
		if err != nil {
			t.Error(err)
			continue
		}
		if got := fi.Mode().Perm(); got != mode {
			t.Errorf("%s: mode %04o, want %04o", path, got, mode)
		}
	}
}
