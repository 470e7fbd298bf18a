package scenario

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestCommands pins the command set: scenarios in testdata depend on every
// name.
func TestCommands(t *testing.T) {
	want := []string{
		"checkacked", "checkevents", "checknodetwins", "clusterfollower", "clusterleader", "clusterready", "clustersynced", "cmptwins",
		"envjson", "envout", "eventbodies", "eventtally", "eventwatch", "fillfs", "freeport", "http", "httpwait", "hubready", "hup", "killmodule", "link",
		"mkcerts", "mounttmpfs", "mqtt", "mqttgettwin", "mqttrefused", "mqtttwin", "noderead", "nodeready", "nodestat", "perm", "sleep", "splitaddr", "subst",
		"twinflood", "usenode", "waitevents", "waitexec", "waitfile", "waithubtwin", "waitlink", "waitnode", "waitqueue", "waitready",
		"waitstat", "waitstatus", "waittwin",
	}
	got := slices.Sorted(maps.Keys(Commands()))
	if !slices.Equal(got, want) {
		t.Errorf("Commands() = %v, want %v", got, want)
	}
}

func TestRun(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "greet"), []byte("#!/bin/sh\necho hello from greet\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	scripts := map[string]string{
		"pass":  "exists a.txt\nenvjson V a.txt k\nmkdir $V\nexists v\n-- a.txt --\n{\"k\":\"v\"}\n",
		"fail":  "# a phase\nexists missing.txt\n",
		"skip":  "skip 'not here'\n",
		"path":  "exec greet\nstdout 'hello from greet'\n",
		"noexc": "greet\n", // not a command: only exec runs programs
		"panic": "waittwin 127.0.0.1:1 d '('\n",
		"waitexec": "waitexec -timeout 5s -cmp want.txt greet\nwaitexec -match 'from gr' greet\nstdout 'hello'\n" +
			"-- want.txt --\nhello from greet\n",
		"waitexecslow": "waitexec -timeout 200ms -match nope greet\n",
		"waitexecre":   "waitexec -match '(' greet\n",
	}
	cases := []struct {
		name    string
		files   []string
		opts    Options
		want    Result
		out     []string // regexps the output matches
		notOut  []string
		keepDir bool
	}{
		{name: "pass", files: []string{"pass"}, want: Result{Passed: 1},
			out: []string{`(?m)^--- PASS: pass \(\d+\.\d\ds\)$`}, notOut: []string{`exists`}},
		{name: "verbose", files: []string{"pass"}, opts: Options{Verbose: true}, want: Result{Passed: 1},
			out: []string{`--- PASS: pass`, `(?m)^    > exists a.txt$`, `(?m)^    PASS$`}},
		{name: "fail", files: []string{"pass", "fail"}, want: Result{Passed: 1, Failed: 1},
			out: []string{`(?m)^--- FAIL: fail `, `(?m)^    > exists missing.txt$`, `missing.txt does not exist`, `FAIL: \S+/fail.txtar:2: `}},
		{name: "skip", files: []string{"skip"}, want: Result{Skipped: 1}, out: []string{`--- SKIP: skip`, `not here`}},
		{name: "path", files: []string{"path"}, opts: Options{Path: []string{bin}}, want: Result{Passed: 1}},
		{name: "no path", files: []string{"path"}, want: Result{Failed: 1}, out: []string{`executable file not found`}},
		{name: "explicit exec", files: []string{"noexc"}, opts: Options{Path: []string{bin}}, want: Result{Failed: 1}, out: []string{`unknown command "greet"`}},
		{name: "panic", files: []string{"panic", "pass"}, want: Result{Failed: 1, Passed: 1}, out: []string{`--- FAIL: panic`, `panic: regexp: Compile`}},
		{name: "waitexec", files: []string{"waitexec"}, opts: Options{Path: []string{bin}}, want: Result{Passed: 1}},
		{name: "waitexec timeout", files: []string{"waitexecslow"}, opts: Options{Path: []string{bin}}, want: Result{Failed: 1},
			out: []string{`timed out after 200ms waiting for .greet.: stdout does not match nope`}},
		{name: "waitexec bad regexp", files: []string{"waitexecre"}, opts: Options{Path: []string{bin}}, want: Result{Failed: 1},
			out: []string{`waitexec -match: error parsing regexp`}, notOut: []string{`panic`}},
		{name: "same name twice", files: []string{"pass", "pass"}, want: Result{Passed: 2}, out: []string{`--- PASS: pass `, `--- PASS: pass#1 `}},
		{name: "keep work", files: []string{"pass"}, opts: Options{KeepWork: true}, want: Result{Passed: 1},
			out: []string{`(?m)^    WORK=\S+script-pass$`}, keepDir: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			var files []string
			for _, f := range c.files {
				p := filepath.Join(dir, f+".txtar")
				if err := os.WriteFile(p, []byte(scripts[f]), 0o644); err != nil {
					t.Fatal(err)
				}
				files = append(files, p)
			}
			var out strings.Builder
			c.opts.Stdout = &out
			got, err := Run(context.Background(), files, c.opts)
			if err != nil || got != c.want {
				t.Errorf("Run = %+v, %v; want %+v\n%s", got, err, c.want, out.String())
			}
			for _, re := range c.out {
				if !regexp.MustCompile(re).MatchString(out.String()) {
					t.Errorf("output does not match %s:\n%s", re, out.String())
				}
			}
			for _, re := range c.notOut {
				if regexp.MustCompile(re).MatchString(out.String()) {
					t.Errorf("output matches %s:\n%s", re, out.String())
				}
			}
			if m := regexp.MustCompile(`WORK=(\S+)`).FindStringSubmatch(out.String()); c.keepDir {
				if m == nil {
					t.Fatalf("no WORK= in the output")
				}
				if _, err := os.Stat(filepath.Join(m[1], "a.txt")); err != nil {
					t.Errorf("work directory not kept: %v", err)
				}
				os.RemoveAll(filepath.Dir(m[1]))
			}
		})
	}
}

// TestRunInterrupted: once ctx ends, no further scenario starts.
func TestRunInterrupted(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.txtar")
	if err := os.WriteFile(p, []byte("env X=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got, err := Run(ctx, []string{p, p}, Options{})
	if err != nil || got != (Result{NotRun: 2}) {
		t.Errorf("Run = %+v, %v; want 2 not run", got, err)
	}
}

// TestRunLeavesNoWork: without KeepWork, the work directories go.
func TestRunLeavesNoWork(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	dir := t.TempDir()
	p := filepath.Join(dir, "a.txtar")
	if err := os.WriteFile(p, []byte("exists a\n-- a --\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), []string{p}, Options{}); err != nil {
		t.Fatal(err)
	}
	left, _ := os.ReadDir(tmp)
	if len(left) != 0 {
		t.Errorf("left behind in $TMPDIR: %v", left)
	}
}
