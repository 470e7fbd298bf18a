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
	{"edge", "clients"},
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

// TestBadFlagIsUsage: an unknown flag or a bad argument is one error line
// and the synopsis (the subcommand's, for edge subcommands) on stderr,
// exit 2.
func TestBadFlagIsUsage(t *testing.T) {
	for _, c := range []struct {
		args     []string
		synopsis string
	}{
		{[]string{"version", "--bogus"}, "usage: outpost version \n"},
		{[]string{"edge", "status", "--bogus"}, "usage: outpost edge status [--data DIR | --api ADDR] [-o table|json]\n"},
		{[]string{"edge", "status", "-o", "yaml"}, "usage: outpost edge status [--data DIR | --api ADDR] [-o table|json]\n"},
		{[]string{"edge", "logs"}, "usage: outpost edge logs MODULE --data DIR [--tail N] [--follow] [--api ADDR]\n"},
		{[]string{"edge", "dashboard", "x"}, "usage: outpost edge dashboard --data DIR [--api ADDR]\n"},
	} {
		code, out, errs := outpost(nil, c.args...)
		lines := strings.SplitAfter(errs, "\n")
		if code != 2 || out != "" || len(lines) != 3 || !strings.HasPrefix(lines[0], "error: ") || lines[1] != c.synopsis {
			t.Errorf("outpost %s: exit %d, stdout %q, stderr %q; want exit 2, one error line and %q", strings.Join(c.args, " "), code, out, errs, c.synopsis)
		}
	}
}
