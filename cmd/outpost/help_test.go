package main

import (
	"runtime"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
)

// helpArgs are the subcommands, beyond every command of the table, whose
// -h must print their usage: those with flag sets of their own, and those
// of the hub commands, whose -h follows positional arguments.
var helpArgs = [][]string{
	{"edge", "status"},
	{"edge", "logs"},
	{"edge", "dashboard"},
	{"device", "create", "x"},
	{"device", "show"},
	{"module", "list", "d"},
	{"twin", "show", "d"},
	{"image", "push"},
	{"events"},
	{"scenario", "run"},
}

// TestHelpEverywhere: -h and --help exit 0 for every command and
// subcommand, with the usage in the house format on stdout and nothing on
// stderr.
func TestHelpEverywhere(t *testing.T) {
	var cases [][]string
	for _, c := range commands {
		cases = append(cases, []string{c.Name})
	}
	cases = append(cases, helpArgs...)
	for _, args := range cases {
		for _, h := range []string{"-h", "--help"} {
			args := append(append([]string(nil), args...), h)
			code, out, errs := outpost(nil, args...)
			want := "usage: outpost " + args[0]
			if len(args) > 2 && args[0] == "edge" {
				want += " " + args[1]
			}
			if code != 0 || !strings.HasPrefix(out, want) || errs != "" {
				t.Errorf("outpost %s: exit %d, stdout %q, stderr %q; want exit 0 and stdout %q…", strings.Join(args, " "), code, short(out), errs, want)
			}
		}
	}
}

// TestVersionFlags: outpost --version and -v print what outpost version does.
func TestVersionFlags(t *testing.T) {
	want := "outpost " + cli.Version + " " + runtime.GOOS + "/" + runtime.GOARCH + " " + runtime.Version() + "\n"
	for _, a := range []string{"version", "--version", "-version", "-v"} {
		code, out, errs := outpost(nil, a)
		if code != 0 || out != want || errs != "" {
			t.Errorf("outpost %s: exit %d, %q, %q; want 0 and %q", a, code, out, errs, want)
		}
	}
}

// TestBadFlagIsUsage: an unknown flag is one error line and the synopsis
// on stderr, exit 2.
func TestBadFlagIsUsage(t *testing.T) {
	for _, args := range [][]string{{"version", "--bogus"}, {"edge", "status", "--bogus"}, {"edge", "status", "-o", "yaml"}} {
		code, out, errs := outpost(nil, args...)
		if code != 2 || out != "" || !strings.HasPrefix(errs, "error: ") || strings.Count(errs, "error:") != 1 {
			t.Errorf("outpost %s: exit %d, stdout %q, stderr %q; want exit 2 and one error line", strings.Join(args, " "), code, out, errs)
		}
	}
}
