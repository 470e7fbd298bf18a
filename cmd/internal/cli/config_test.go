package cli

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// got is what the test command saw.
type got struct {
	data, key string
	port      int
	debug     bool
	wait      time.Duration
}

func testCmd(g *got) Command {
	return Command{
		Name: "svc", Usage: "[flags]", Config: true,
		Secrets: []Secret{{Flag: "key", Env: "SVC_KEY"}},
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&g.data, "data", "", "")
			fs.StringVar(&g.key, "key", "", "")
			fs.IntVar(&g.port, "port", 1, "")
			fs.BoolVar(&g.debug, "debug", false, "")
			fs.DurationVar(&g.wait, "wait", time.Second, "")
		},
		Run: func(context.Context, Env, *flag.FlagSet) error { return nil },
	}
}

func run(t *testing.T, env map[string]string, args ...string) (got, int, string) {
	t.Helper()
	var g got
	var stderr bytes.Buffer
	code := Main(append([]string{"svc"}, args...), []Command{testCmd(&g)},
		Env{Stdout: &bytes.Buffer{}, Stderr: &stderr, Getenv: func(k string) string { return env[k] }})
	return g, code, stderr.String()
}

func file(t *testing.T, name, data string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigSetsFlagsCommandLineWins(t *testing.T) {
	cfg := file(t, "svc.toml", "data = \"/var/lib/svc\"\nport = 8443\ndebug = true\nwait = \"5s\"\nkey = \"k1\"\n", 0o600)
	g, code, stderr := run(t, nil, "--config", cfg, "--port", "9")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := got{data: "/var/lib/svc", key: "k1", port: 9, debug: true, wait: 5 * time.Second}
	if g != want {
		t.Errorf("got %+v, want %+v", g, want)
	}
	if stderr != "" {
		t.Errorf("warnings for a 0600 config file: %s", stderr)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct{ name, toml, want string }{
		{"unknown key", "dta = \"x\"\n", `unknown key "dta"; valid keys: data, debug, key, key-file, port, wait`},
		{"table", "[data]\nx = 1\n", "want a string, a number or true/false"},
		{"bad value", "port = \"many\"\n", `port = "many"`},
		{"syntax", "data = \n", "--config"},
		{"itself", "config = \"other.toml\"\n", `unknown key "config"`},
	} {
		_, code, stderr := run(t, nil, "--config", file(t, "svc.toml", c.toml, 0o600))
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", c.name, code, stderr, c.want)
		}
	}
	if _, code, stderr := run(t, nil, "--config", "/nonexistent.toml"); code != 2 || !strings.Contains(stderr, "no such file") {
		t.Errorf("missing config: exit %d, %q", code, stderr)
	}
}

// A config file with a key that others can read draws a warning.
func TestConfigWithKeyReadableByOthers(t *testing.T) {
	_, code, stderr := run(t, nil, "--config", file(t, "svc.toml", "key = \"k1\"\n", 0o644))
	if code != 0 || !strings.Contains(stderr, "chmod 600") {
		t.Errorf("exit %d, stderr %q; want a warning with chmod 600", code, stderr)
	}
	_, _, stderr = run(t, nil, "--config", file(t, "svc.toml", "port = 3\n", 0o644))
	if stderr != "" {
		t.Errorf("warning for a config file without a key: %q", stderr)
	}
}

func TestSecretSources(t *testing.T) {
	env := map[string]string{"SVC_KEY": "from-env"}
	keyFile := file(t, "key", "from-file\n", 0o600)
	for _, c := range []struct {
		name     string
		env      map[string]string
		args     []string
		want     string
		warnings int
	}{
		{"env", env, nil, "from-env", 0},
		{"file beats env", env, []string{"--key-file", keyFile}, "from-file", 0},
		{"argv beats env, with a warning", env, []string{"--key", "from-argv"}, "from-argv", 1},
		{"config beats env", env, []string{"--config", file(t, "c.toml", "key = \"from-config\"", 0o600)}, "from-config", 0},
		{"config names the file", nil, []string{"--config", file(t, "c.toml", "key-file = \""+keyFile+"\"", 0o644)}, "from-file", 0},
		{"nothing", nil, nil, "", 0},
	} {
		g, code, stderr := run(t, c.env, c.args...)
		if code != 0 || g.key != c.want {
			t.Errorf("%s: key %q exit %d (%s); want %q", c.name, g.key, code, stderr, c.want)
		}
		if n := strings.Count(stderr, "warning:"); n != c.warnings {
			t.Errorf("%s: %d warnings, want %d: %s", c.name, n, c.warnings, stderr)
		}
		if c.warnings > 0 && !(strings.Contains(stderr, "--key-file FILE") && strings.Contains(stderr, "SVC_KEY")) {
			t.Errorf("%s: warning does not name the alternatives: %s", c.name, stderr)
		}
	}
}

func TestSecretFileErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"missing", []string{"--key-file", "/nonexistent"}, 1, "--key-file: open /nonexistent: no such file"},
		{"empty", []string{"--key-file", file(t, "key", "\n", 0o600)}, 1, "the file is empty"},
		{"both", []string{"--key", "k", "--key-file", file(t, "key", "k", 0o600)}, 2, "give --key or --key-file, not both"},
		{"open", []string{"--key-file", file(t, "key", "k", 0o640)}, 0, "readable by its group or by others (mode 0640)"},
	} {
		_, code, stderr := run(t, nil, c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", c.name, code, stderr, c.code, c.want)
		}
	}
}
