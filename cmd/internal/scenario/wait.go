package scenario

import (
	"flag"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

const waitexecUsage = "usage: waitexec [-timeout D] [-cmp FILE | -match REGEXP] PROGRAM [ARGS...]"

// waitexec [-timeout D] [-cmp FILE | -match REGEXP] PROGRAM [ARGS...]: the
// general "wait until" of the scenarios. It runs PROGRAM as exec does, again
// and again, until it exits 0 and its stdout equals FILE (-cmp, a golden
// file) or matches REGEXP (-match), or simply until it exits 0; for at most
// D (default 30s). Afterwards stdout and stderr are the last run's, for
// the commands that follow.
func cmdWaitExec(ts *testscript.TestScript, neg bool, args []string) {
	fs := flag.NewFlagSet("waitexec", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 30*time.Second, "how long to keep trying")
	golden := fs.String("cmp", "", "a file stdout must equal")
	match := fs.String("match", "", "a regular expression stdout must match")
	// Not ts.Stderr(): a builtin that asks for it gets its own (empty)
	// stdout and stderr afterwards, in place of the last run's.
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		ts.Fatalf("waitexec: %v\n%s", err, waitexecUsage)
	}
	if neg || fs.NArg() == 0 || (*golden != "" && *match != "") {
		ts.Fatalf(waitexecUsage)
	}
	var re *regexp.Regexp
	if *match != "" {
		var err error
		if re, err = regexp.Compile(*match); err != nil {
			ts.Fatalf("waitexec -match: %v", err)
		}
	}
	want := ""
	if *golden != "" {
		want = ts.ReadFile(*golden)
	}
	prog := fs.Args()
	var last string
	deadline := time.Now().Add(*timeout)
	for pause := 50 * time.Millisecond; ; pause = min(2*pause, time.Second) {
		last = waitexecOnce(ts, prog, *golden, want, re)
		if last == "" {
			return
		}
		if time.Now().Add(pause).After(deadline) {
			break
		}
		time.Sleep(pause)
	}
	ts.Fatalf("timed out after %v waiting for `%s`: %s", *timeout, strings.Join(prog, " "), last)
}

// waitexecOnce runs prog once and says why it is not there yet ("" when it
// is).
func waitexecOnce(ts *testscript.TestScript, prog []string, golden, want string, re *regexp.Regexp) string {
	if err := ts.Exec(prog[0], prog[1:]...); err != nil {
		return err.Error()
	}
	got := ts.ReadFile("stdout")
	switch {
	case golden != "" && got != want:
		return "stdout differs from " + golden + ":\n" + got
	case re != nil && !re.MatchString(got):
		return "stdout does not match " + re.String() + ":\n" + got
	}
	return ""
}
