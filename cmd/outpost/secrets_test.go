package main

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
)

// The hub owner's connection string reaches the hub commands from a file as
// well as from the environment, wherever the flag stands; in the command
// line it works with one warning.
func TestHubCLIConnectionStringSources(t *testing.T) {
	h := newFakeHub(t, map[string]answer{"GET /devices": {body: "[]"}})
	cs := "HostName=" + fakeHubHost + ";SharedAccessKeyName=owner;SharedAccessKey=" + base64.StdEncoding.EncodeToString(fakeOwnerKey)
	file := filepath.Join(t.TempDir(), "owner.connection-string")
	if err := os.WriteFile(file, []byte(cs+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args     []string
		warnings int
	}{
		{[]string{"device", "list", "--hub-connection-string-file", file}, 0},
		{[]string{"device", "--hub-connection-string-file", file, "list"}, 0},
		{[]string{"device", "list", "--hub-connection-string", cs}, 1},
		{[]string{"device", "--hub-connection-string", cs, "list"}, 1},
	} {
		env := map[string]string{"OUTPOST_HUB_URL": h.srv.URL}
		var out, errb bytes.Buffer
		code := cli.Main(c.args, commands, cli.Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }})
		name := strings.Join(c.args, " ")
		if code != 0 || strings.TrimSpace(out.String()) != "[]" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", name, code, out.String(), errb.String())
		}
		if n := strings.Count(errb.String(), "warning: --hub-connection-string puts a key in the command line"); n != c.warnings {
			t.Errorf("%s: %d warnings, want %d: %s", name, n, c.warnings, errb.String())
		}
		if strings.Contains(errb.String(), base64.StdEncoding.EncodeToString(fakeOwnerKey)) {
			t.Errorf("%s: the key is on stderr", name)
		}
	}
}
