package scenario

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// sleep DURATION: let background work happen (e.g. publishers before a kill).
func cmdSleep(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: sleep DURATION")
	}
	d, err := time.ParseDuration(args[0])
	ts.Check(err)
	time.Sleep(d)
}

// envjson VAR FILE FIELD: set $VAR to the string FIELD of the JSON object
// in FILE (e.g. the connectionString printed by `outpost device create`).
func cmdEnvJSON(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: envjson VAR FILE FIELD")
	}
	var m map[string]any
	ts.Check(json.Unmarshal([]byte(ts.ReadFile(args[1])), &m))
	v, ok := m[args[2]].(string)
	if !ok {
		ts.Fatalf("%s has no string field %q", args[1], args[2])
	}
	ts.Setenv(args[0], v)
}

// envout VAR: sets VAR to the previous command's stdout, surrounding space
// trimmed (e.g. a token printed by `exec outpost token`).
func cmdEnvOut(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: envout VAR")
	}
	v := strings.TrimSpace(ts.ReadFile("stdout"))
	if v == "" {
		ts.Fatalf("envout %s: the previous command printed nothing", args[0])
	}
	ts.Setenv(args[0], v)
}

// splitaddr ADDR HOSTVAR PORTVAR: splits host:port (mosquitto clients take
// -h and -p separately).
func cmdSplitAddr(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: splitaddr ADDR HOSTVAR PORTVAR")
	}
	host, port, err := net.SplitHostPort(args[0])
	ts.Check(err)
	ts.Setenv(args[1], host)
	ts.Setenv(args[2], port)
}

// perm FILE MODE: FILE's permission bits are MODE (octal, e.g. 0600).
func cmdPerm(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: perm FILE MODE")
	}
	want, err := strconv.ParseUint(args[1], 8, 32)
	ts.Check(err)
	fi, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	if got := fi.Mode().Perm(); (got == os.FileMode(want)) == neg {
		ts.Fatalf("%s has mode %#o, want %s%#o", args[0], got, map[bool]string{true: "not "}[neg], want)
	}
}

// waitfile FILE: wait until FILE exists (a background client writes it once
// it listens).
func cmdWaitFile(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: waitfile FILE")
	}
	poll(ts, args[0], func() string {
		if _, err := os.Stat(ts.MkAbs(args[0])); err != nil {
			return err.Error()
		}
		return ""
	})
}

// poll retries check every 50 ms for up to 30 s; check returns "" when
// satisfied, else what it saw last (for the failure message).
func poll(ts *testscript.TestScript, what string, check func() string) {
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if last = check(); last == "" {
			return
		}
	}
	ts.Fatalf("timed out waiting for %s; last saw: %s", what, last)
}

// waitReadyFile waits until dir/ready.json holds a JSON document and
// decodes it into v (an edge.Ready or a hub.Ready).
func waitReadyFile(ts *testscript.TestScript, dir string, v any) {
	path := filepath.Join(dir, "ready.json")
	poll(ts, path, func() string {
		data, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(data, v)
		}
		if err != nil {
			return err.Error()
		}
		return ""
	})
}

// subst FILE...: replace ${NAME} in each FILE with the script's variable
// NAME (e.g. an image digest or a module path in a deployment). Only the
// braced form: deployments are full of $edgeAgent and $upstream.
var braced = regexp.MustCompile(`\$\{[A-Za-z_][A-Za-z0-9_]*\}`)

func cmdSubst(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 0 {
		ts.Fatalf("usage: subst FILE...")
	}
	for _, f := range args {
		path := ts.MkAbs(f)
		data, err := os.ReadFile(path)
		ts.Check(err)
		out := braced.ReplaceAllStringFunc(string(data), func(m string) string { return ts.Getenv(m[2 : len(m)-1]) })
		ts.Check(os.WriteFile(path, []byte(out), 0o644))
	}
}
