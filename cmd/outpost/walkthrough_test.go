package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// walkMarker precedes each fenced block of a walkthrough in the docs.
const walkMarker = "<!-- walkthrough"

// walkPorts are the ports the walkthroughs name; the test gives each a free
// one, everywhere it appears (listeners, the hub's HostName in the
// mosquitto_pub user name, the expected output).
var walkPorts = []string{"8080", "1883", "8883", "18081"}

// TestDocsWalkthrough runs the walkthroughs of README.md and docs/modules.md
// as a new user would: the blocks marked `<!-- walkthrough -->`, in order,
// each command as written, in bash (with pipefail), in a fresh directory
// that holds what `make build` leaves in the repository (bin/ with the
// sample modules' binaries; `outpost` is on PATH). What changes from the
// page: the ports (free ones instead), nothing else. The hub, the edge and
// every --follow run in the background, as in their own terminals; a
// command's `# prints: TEXT` comment is checked in its output (before the
// next command, but by the end for a follower that ends its block: another
// terminal makes what it shows). Each block is a new terminal. Any command that
// fails or does not print what the page says fails the test. The variables,
// umask and directory a command leaves are those of the next one, as in
// one terminal.
func TestDocsWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub, an edge and modules")
	}
	for _, tool := range []string{"mosquitto_pub", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("OUTPOST_BROWSER_TESTS") == "1" {
				t.Fatalf("%s is missing; the walkthrough uses it (.ci/run installs mosquitto-clients and jq)", tool)
			}
			t.Skipf("%s is not installed (Debian: apt install mosquitto-clients jq); with OUTPOST_BROWSER_TESTS=1 this fails", tool)
		}
	}
	blocks := append(walkBlocks(t, "../../README.md"), walkBlocks(t, "../../docs/modules.md")...)
	checkWalkManifest(t, slices.Concat(blocks...))
	w := newWalk(t)
	defer w.stop()
	for _, b := range blocks {
		w.newTerminal()
		for i, c := range b {
			w.run(c, i == len(b)-1)
			if t.Failed() {
				return
			}
		}
	}
	w.followers()
}

// walkCmd is one command of a walkthrough.
type walkCmd struct {
	text   string // as written, continuation lines and here-documents included
	prints string // from a `# prints: TEXT` comment
	file   string
}

// background reports whether the command keeps running (until Ctrl-C): a
// hub or an edge, or anything that follows.
func (c walkCmd) background() (server, follower bool) {
	server = regexp.MustCompile(`^outpost (hub|edge) --`).MatchString(c.text)
	follower = regexp.MustCompile(`\s--follow(\s|$)`).MatchString(c.text)
	return server, follower
}

// walkBlocks returns the commands of each marked block of a page.
func walkBlocks(t *testing.T, path string) [][]walkCmd {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var blocks [][]walkCmd
	for i := 0; i < len(lines); i++ {
		if !strings.HasPrefix(lines[i], walkMarker) {
			continue
		}
		if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "```sh") {
			t.Fatalf("%s:%d: a walkthrough marker must be followed by a ```sh block", path, i+1)
		}
		var block []string
		for i += 2; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
			block = append(block, lines[i])
		}
		blocks = append(blocks, splitCommands(path, block))
	}
	if len(blocks) == 0 {
		t.Fatalf("%s: no walkthrough blocks (%s -->)", path, walkMarker)
	}
	return blocks
}

var heredoc = regexp.MustCompile(`<<-?'?"?([A-Za-z_]+)'?"?`)

// splitCommands joins continuation lines and here-documents and takes each
// command's trailing comment apart.
func splitCommands(file string, block []string) []walkCmd {
	var cmds []walkCmd
	for i := 0; i < len(block); i++ {
		line := strings.TrimRight(block[i], " ")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		var parts []string
		for strings.HasSuffix(line, `\`) && i+1 < len(block) {
			parts = append(parts, line)
			i++
			line = strings.TrimRight(block[i], " ")
		}
		code, comment := cutComment(line)
		parts = append(parts, code)
		if m := heredoc.FindStringSubmatch(code); m != nil {
			for i++; i < len(block); i++ {
				parts = append(parts, block[i])
				if block[i] == m[1] {
					break
				}
			}
		}
		c := walkCmd{text: strings.Join(parts, "\n"), file: file}
		if _, p, ok := strings.Cut(comment, "prints: "); ok {
			c.prints = strings.TrimSpace(p)
		}
		cmds = append(cmds, c)
	}
	return cmds
}

// cutComment splits a shell line at a `#` that starts a comment (after a
// blank, outside quotes).
func cutComment(line string) (code, comment string) {
	var quote rune
	for i, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == '#' && i > 0 && (line[i-1] == ' ' || line[i-1] == '\t'):
			return strings.TrimRight(line[:i], " \t"), line[i+1:]
		}
	}
	return line, ""
}

// checkWalkManifest checks that the manifest the modules walkthrough writes
// is the example of docs/modules.md's "Deploying", images aside.
func checkWalkManifest(t *testing.T, cmds []walkCmd) {
	t.Helper()
	var written string
	for _, c := range cmds {
		if first, rest, ok := strings.Cut(c.text, "\n"); ok && strings.Contains(first, "manifest.json <<") {
			written = rest[:strings.LastIndex(rest, "\n")]
		}
	}
	if written == "" {
		t.Fatal("docs/modules.md: the walkthrough writes no manifest.json")
	}
	var example string
	for _, b := range fencedBlocks(t, "../../docs/modules.md") {
		if strings.HasPrefix(b, `{"modulesContent"`) {
			example = b
			break
		}
	}
	norm := func(what, s string) any {
		s = regexp.MustCompile(`"image": "[^"]*"`).ReplaceAllString(s, `"image": ""`)
		var v any
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			t.Fatalf("docs/modules.md: %s: %v", what, err)
		}
		return v
	}
	if a, b := norm("the example manifest", example), norm("the walkthrough's manifest", written); !reflect.DeepEqual(a, b) {
		t.Errorf("docs/modules.md: the walkthrough deploys another manifest than the example of Deploying (images aside):\n%s\n---\n%s", example, written)
	}
}

// walk is the state of one terminal session shared by the commands.
type walk struct {
	t     *testing.T
	root  string
	dir   string
	env   []string
	umask string
	ports map[string]string
	state string
	procs []*walkProc
}

func newWalk(t *testing.T) *walk {
	root, err := os.MkdirTemp("", "walkthrough-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	// Modules run under their own uids when the edge is root: every
	// directory above the data directory must be searchable.
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, sample := range []string{"outpost-tempsensor", "outpost-filter"} {
		linkSample(t, sample, filepath.Join(root, "bin", sample))
	}
	ports := map[string]string{}
	for _, p := range walkPorts {
		ports[p] = strconv.Itoa(freePort(t))
	}
	t.Logf("ports %v", ports)
	return &walk{t: t, root: root, ports: ports, state: filepath.Join(t.TempDir(), "state")}
}

// newTerminal starts a session in the top directory, with the test's
// environment but for Outpost's own variables.
func (w *walk) newTerminal() {
	w.dir, w.umask, w.env = w.root, "0022", nil
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OUTPOST_") || strings.HasPrefix(kv, "OUTPOST_BROWSER_TESTS=") {
			w.env = append(w.env, kv)
		}
	}
	w.env = append(w.env, "PWD="+w.root)
}

var portRe = regexp.MustCompile(`\b(` + strings.Join(walkPorts, "|") + `)\b`)

// subst replaces the page's ports in s.
func (w *walk) subst(s string) string {
	return portRe.ReplaceAllStringFunc(s, func(p string) string { return w.ports[p] })
}

// linkSample puts a sample module's binary at dst as a regular file, as
// `make build` leaves it in bin/.
func linkSample(t *testing.T, name, dst string) {
	src, err := exec.LookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	if src, err = filepath.EvalSymlinks(src); err != nil {
		t.Fatal(err)
	}
	if os.Link(src, dst) == nil {
		return
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// script wraps a command so that it sees the session's umask and leaves
// its variables (set -a exports every assignment), umask and directory for
// the next one.
func (w *walk) script(cmd string, background bool) string {
	if background {
		return "set -a -o pipefail\numask " + w.umask + "\nexec " + cmd
	}
	return "set -a -o pipefail\numask " + w.umask + "\n" + cmd + "\n__rc=$?\numask > " + w.state + ".umask\nenv -0 > " + w.state + ".env\nexit $__rc\n"
}

// run runs one command. A server's expected output is awaited before the
// next command, and a follower's too unless it ends its block: its output
// then comes from commands of another terminal.
func (w *walk) run(c walkCmd, last bool) {
	t := w.t
	text, prints := w.subst(c.text), w.subst(c.prints)
	server, follower := c.background()
	if server || follower {
		if server && prints == "" {
			t.Fatalf("%s: %s: a server's line needs a `# prints: …` comment to know when it is ready", c.file, text)
		}
		p := w.start(text, prints, server, follower && last)
		if !p.deferred && prints != "" {
			w.await(p, time.Now().Add(90*time.Second))
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", w.script(text, false))
	cmd.Dir, cmd.Env = w.dir, w.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: `%s` failed: %v\n%s%s", c.file, text, err, out.String(), w.logs())
	}
	if prints != "" && !strings.Contains(out.String(), prints) {
		t.Fatalf("%s: `%s` did not print %q:\n%s%s", c.file, text, prints, out.String(), w.logs())
	}
	if strings.Contains(out.String(), "warning:") {
		t.Errorf("%s: `%s` warned, which the page does not say:\n%s", c.file, text, out.String())
	}
	w.keepState()
}

// keepState reads what the last command left: its variables, its
// directory and its umask.
func (w *walk) keepState() {
	t := w.t
	data, err := os.ReadFile(w.state + ".env")
	if err != nil {
		t.Fatal(err)
	}
	w.env = w.env[:0]
	for _, kv := range strings.Split(string(data), "\x00") {
		k, v, ok := strings.Cut(kv, "=")
		switch {
		case !ok || k == "__rc" || k == "_" || k == "SHLVL" || k == "OLDPWD":
		case k == "PWD":
			w.dir = v
			w.env = append(w.env, kv)
		default:
			w.env = append(w.env, kv)
		}
	}
	u, err := os.ReadFile(w.state + ".umask")
	if err != nil {
		t.Fatal(err)
	}
	w.umask = strings.TrimSpace(string(u))
}

// walkProc is a command running in the background, as in its own terminal.
type walkProc struct {
	text, prints string
	server       bool // a hub or an edge: must stop cleanly
	deferred     bool // awaited at the end of the walkthrough
	cmd          *exec.Cmd
	mu           sync.Mutex
	out          bytes.Buffer
	done         chan struct{}
	err          error
}

func (p *walkProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *walkProc) output() string { p.mu.Lock(); defer p.mu.Unlock(); return p.out.String() }

func (w *walk) start(text, prints string, server, deferred bool) *walkProc {
	p := &walkProc{text: text, prints: prints, server: server, deferred: deferred, done: make(chan struct{})}
	p.cmd = exec.Command("bash", "-c", w.script(text, true))
	p.cmd.Dir, p.cmd.Env = w.dir, w.env
	p.cmd.Stdout, p.cmd.Stderr = p, p
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		w.t.Fatalf("`%s`: %v", text, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	w.procs = append(w.procs, p)
	return p
}

// await waits until p printed what the page says.
func (w *walk) await(p *walkProc, deadline time.Time) {
	w.t.Helper()
	for !strings.Contains(p.output(), p.prints) {
		select {
		case <-p.done:
			w.t.Fatalf("`%s` ended (%v) before printing %q:\n%s", p.text, p.err, p.prints, p.output())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("`%s` did not print %q in time:\n%s%s", p.text, p.prints, p.output(), w.logs())
		}
	}
}

// followers waits until every command that follows printed what the page
// says it prints.
func (w *walk) followers() {
	deadline := time.Now().Add(2 * time.Minute)
	for _, p := range w.procs {
		if p.deferred && p.prints != "" {
			w.await(p, deadline)
		}
	}
}

// stop ends the background commands as Ctrl-C would, the last started
// first; a hub or an edge must stop cleanly.
func (w *walk) stop() {
	for i := len(w.procs) - 1; i >= 0; i-- {
		p := w.procs[i]
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
			w.t.Errorf("`%s` did not stop on SIGINT in 20s", p.text)
		}
		var exit *exec.ExitError
		if p.server && errors.As(p.err, &exit) {
			w.t.Errorf("`%s` stopped with %v:\n%s", p.text, p.err, p.output())
		}
		if out := p.output(); strings.Contains(out, "warning:") || strings.Contains(out, "level=ERROR") {
			w.t.Errorf("`%s` warned or logged an error, which the page does not say:\n%s", p.text, out)
		}
	}
}

// logs is the tail of every background command's output, for a failure.
func (w *walk) logs() string {
	var b strings.Builder
	for _, p := range w.procs {
		out := p.output()
		if len(out) > 4000 {
			out = "…" + out[len(out)-4000:]
		}
		fmt.Fprintf(&b, "\n--- `%s`:\n%s", p.text, out)
	}
	return b.String()
}
