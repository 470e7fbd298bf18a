package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
)

// TestSampleUsage: `outpost sample` names the samples it runs; a missing,
// unknown or extra argument is bad usage (exit 2), and a sample started
// outside an edge deployment says which environment it lacks (exit 1).
func TestSampleUsage(t *testing.T) {
	t.Setenv("EdgeHubConnectionString", "")
	for _, tt := range []struct {
		args   []string
		code   int
		stderr string
		stdout string
	}{
		{[]string{"sample"}, 2, "error: which sample? want filter or tempsensor\nusage: outpost sample filter|tempsensor\n", ""},
		{[]string{"sample", "humidity"}, 2, "error: no sample \"humidity\": want filter or tempsensor\n", ""},
		{[]string{"sample", "tempsensor", "--verbose"}, 2, "error: unexpected argument \"--verbose\"", ""},
		{[]string{"sample", "-x"}, 2, "error: flag provided but not defined: -x", ""},
		{[]string{"sample", "tempsensor"}, 1, "error: not running as an edge module: EdgeHubConnectionString is not set", ""},
		{[]string{"sample", "filter"}, 1, "error: not running as an edge module: EdgeHubConnectionString is not set", ""},
		{[]string{"sample", "-h"}, 0, "", "usage: outpost sample filter|tempsensor"},
	} {
		var out, errb bytes.Buffer
		code := cli.Main(tt.args, commands, cli.Env{Stdout: &out, Stderr: &errb})
		if code != tt.code || !strings.HasPrefix(errb.String(), tt.stderr) || (tt.stderr == "" && errb.Len() > 0) {
			t.Errorf("outpost %s: exit %d, stderr %q\nwant exit %d, stderr starting %q", strings.Join(tt.args, " "), code, errb.String(), tt.code, tt.stderr)
		}
		if !strings.HasPrefix(out.String(), tt.stdout) || (tt.stdout == "" && out.Len() > 0) {
			t.Errorf("outpost %s: stdout %q, want %q", strings.Join(tt.args, " "), out.String(), tt.stdout)
		}
	}
}
