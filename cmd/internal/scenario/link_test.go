package scenario

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestLinkCmdParse(t *testing.T) {
	rates := []struct {
		in   string
		want int64 // -1: error
	}{
		{"0", 0}, {"512", 512}, {"512B", 512}, {"64KB", 64000}, {"64kb", 64000},
		{"2MB", 2000000}, {"64KiB", 65536}, {"1MiB", 1 << 20},
		{"", -1}, {"KB", -1}, {"-1KB", -1}, {"1.5MB", -1}, {"1GB", -1}, {"1 KB", -1},
		{"9223372036854775807", math.MaxInt64}, {"9223372036854775807KB", -1},
	}
	for _, c := range rates {
		got, err := parseRate(c.in)
		if (err != nil) != (c.want < 0) || (err == nil && got != c.want) {
			t.Errorf("parseRate(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	targets := []struct{ in, want string }{ // want "": error
		{"127.0.0.1:8080", "127.0.0.1:8080"},
		{"http://127.0.0.1:8080", "127.0.0.1:8080"},
		{"http://127.0.0.1:8080/path?q=1", "127.0.0.1:8080"},
		{"https://hub.local", "hub.local:443"},
		{"http://[::1]:9", "[::1]:9"},
		{"127.0.0.1", ""}, {"ftp://hub.local", ""}, {"http://:80", ""}, {"http://", ""},
	}
	for _, c := range targets {
		got, err := linkTarget(c.in)
		if (err != nil) != (c.want == "") || got != c.want {
			t.Errorf("linkTarget(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func FuzzLinkCmdRate(f *testing.F) {
	for _, s := range []string{"0", "64KB", "1MiB", "9223372036854775807KB", "-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseRate(s)
		if err == nil && n < 0 {
			t.Fatalf("parseRate(%q) = %d", s, n)
		}
	})
}

// TestLinkCmdScript drives the link command from a script in front of an
// HTTP server, without an edge or a hub.
func TestLinkCmdScript(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello")
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "link.txtar"), []byte(linkScript), 0o644); err != nil {
		t.Fatal(err)
	}
	p := testscript.Params{Dir: dir, RequireExplicitExec: true, RequireUniqueNames: true, Cmds: Commands()}
	p.Setup = func(e *testscript.Env) error {
		e.Setenv("TARGET", srv.URL)
		return nil
	}
	t.Cleanup(func() { // after the scripts, which run as parallel subtests
		links.Lock()
		defer links.Unlock()
		if len(links.m) != 0 {
			t.Errorf("scripts left %d links running", len(links.m))
		}
	})
	testscript.Run(t, p)
}

const linkScript = `
link start hub $TARGET
http GET $hub/
stdout hello
link stats hub
stdout '^conns=1 cuts=0 up=[1-9][0-9]* down=[1-9][0-9]*$'

link delay hub 20ms
link rate hub 1MiB
http GET $hub/
stdout hello
link delay hub 0s
link rate hub 0

link cut hub
link stats hub
stdout ' cuts=1 '
link restore hub
http GET $hub/
stdout hello

link blackhole hub
link restore hub
link flap hub 10ms 30ms 10ms 30ms
sleep 200ms
link unflap hub
link stats hub
stdout ' cuts=([2-9]|[1-9][0-9]+) '
http GET http://$hub_ADDR/
stdout hello
`
