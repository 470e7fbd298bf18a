package scenario

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// Options configures Run.
type Options struct {
	// Stdout gets one line per scenario (--- PASS, FAIL or SKIP with its
	// duration), each followed by the scenario's log when it failed or
	// Verbose is set.
	Stdout io.Writer
	// Verbose prints every scenario's log, not only the failures'.
	Verbose bool
	// KeepWork keeps each scenario's work directory ($WORK) and prints it.
	KeepWork bool
	// Path lists directories put first in each scenario's PATH (e.g. the one
	// holding the outpost binary that `exec outpost` should run).
	Path []string
}

// Result is how a run of scenarios went.
type Result struct {
	Passed, Failed, Skipped int
	// NotRun counts the scenarios that did not start because ctx ended.
	NotRun int
}

// Run runs the scenario files one after the other with Commands, as
// `go test ./cmd/outpost` runs testdata/script, and reports each on
// o.Stdout. Once ctx ends no further scenario starts; the running one goes
// on (a Ctrl-C at a terminal reaches its processes too). The error is for
// what stopped the scenarios from running at all.
func Run(ctx context.Context, files []string, o Options) (Result, error) {
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	readyTesting()
	root, err := os.MkdirTemp("", "outpost-scenario-")
	if err != nil {
		return Result{}, fmt.Errorf("scenario work directory: %w", err)
	}
	if !o.KeepWork {
		defer os.RemoveAll(root)
	}
	r := &runner{ctx: ctx, opts: o}
	p := testscript.Params{
		Files:               files,
		Cmds:                Commands(),
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		WorkdirRoot:         root, // we remove the work directories, not testscript
		Setup:               r.setup,
	}
	r.protect(func() { testscript.RunT(r, p) })
	if r.fatal != "" {
		return r.res, errors.New(strings.TrimSpace(r.fatal))
	}
	return r.res, nil
}

// OpenWork lets the modules of an edge running as root, which run under
// their own uids, reach an edge data directory in $WORK: testscript makes
// $WORK and its parent 0700. They become 0711 (searchable, not listable),
// up to the temporary directory. Setup functions call it.
func OpenWork(env *testscript.Env) error {
	if os.Geteuid() != 0 {
		return nil
	}
	tmp := filepath.Clean(os.TempDir())
	for p := filepath.Clean(env.WorkDir); strings.HasPrefix(p, tmp+string(filepath.Separator)); p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if err := os.Chmod(p, st.Mode().Perm()|0o011); err != nil {
			return fmt.Errorf("let modules reach $WORK: %w", err)
		}
	}
	return nil
}

// testing.Short, which testscript's [short] and [net] conditions ask,
// panics unless the testing flags are registered and parsed: outside
// `go test` (and in a binary that testscript.Main runs as a command) they
// are not.
func readyTesting() {
	testing.Init() // a no-op when it has run
	if !flag.Parsed() {
		_ = flag.CommandLine.Parse(nil)
	}
}

// runner implements testscript.T outside go test. RunT uses it for the
// whole run (Run per scenario, Fatal when it cannot start) and gives each
// scenario a scriptT. Parallel is a no-op: scenarios run one after the other,
// so their logs do not interleave.
type runner struct {
	ctx   context.Context
	opts  Options
	res   Result
	fatal string // what a Fatal at the top level said
	mu    sync.Mutex
}

// errFailNow and errSkip unwind a scenario's goroutine from FailNow and
// Skip to Run, as runtime.Goexit does for *testing.T.
var (
	errFailNow = errors.New("scenario failed")
	errSkip    = errors.New("scenario skipped")
)

func (r *runner) protect(f func()) {
	defer func() {
		if e := recover(); e != nil && e != errFailNow && e != errSkip {
			panic(e)
		}
	}()
	f()
}

func (r *runner) Skip(args ...any)  { r.Log(args...); panic(errSkip) }
func (r *runner) Fatal(args ...any) { r.Log(args...); r.FailNow() }
func (r *runner) Parallel()         {}
func (r *runner) FailNow()          { panic(errFailNow) }
func (r *runner) Verbose() bool     { return r.opts.Verbose }

func (r *runner) Log(args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fatal += fmt.Sprintln(args...)
}

func (r *runner) Run(name string, f func(testscript.T)) {
	if r.ctx.Err() != nil {
		r.res.NotRun++
		return
	}
	t := &scriptT{r: r, name: name}
	t.run(f)
	r.report(t)
}

// setup records each scenario's $WORK and puts o.Path first in its PATH.
func (r *runner) setup(env *testscript.Env) error {
	if t, ok := env.T().(*scriptT); ok {
		t.work = env.WorkDir
	}
	if err := OpenWork(env); err != nil {
		return err
	}
	if len(r.opts.Path) > 0 {
		path := slices.Concat(r.opts.Path, []string{env.Getenv("PATH")})
		env.Setenv("PATH", strings.Join(path, string(os.PathListSeparator)))
	}
	return nil
}

func (r *runner) report(t *scriptT) {
	status := "PASS"
	switch {
	case t.failed:
		status = "FAIL"
		r.res.Failed++
	case t.skipped:
		status = "SKIP"
		r.res.Skipped++
	default:
		r.res.Passed++
	}
	w := r.opts.Stdout
	fmt.Fprintf(w, "--- %s: %s (%.2fs)\n", status, t.name, t.took.Seconds())
	if t.failed || t.skipped || r.opts.Verbose {
		for _, l := range strings.SplitAfter(strings.TrimRight(t.log.String(), "\n"), "\n") {
			fmt.Fprintf(w, "    %s", l)
		}
		fmt.Fprintln(w)
	}
	if r.opts.KeepWork && t.work != "" {
		fmt.Fprintf(w, "    WORK=%s\n", t.work)
	} else if t.work != "" {
		_ = os.RemoveAll(t.work)
	}
}

// scriptT is the testscript.T of one scenario: it keeps the log and
// whether the scenario failed or was skipped.
type scriptT struct {
	r               *runner
	name            string
	work            string
	mu              sync.Mutex
	log             strings.Builder
	failed, skipped bool
	took            time.Duration
}

func (t *scriptT) run(f func(testscript.T)) {
	start := time.Now()
	defer func() {
		t.took = time.Since(start)
		switch e := recover(); e {
		case nil:
		case errFailNow:
			t.failed = true
		case errSkip:
			t.skipped = true
		default: // a command's bug (or a bad regexp) fails its scenario, not the run
			t.Log(fmt.Sprintf("panic: %v\n%s", e, debug.Stack()))
			t.failed = true
		}
	}()
	f(t)
}

func (t *scriptT) Skip(args ...any)  { t.Log(args...); panic(errSkip) }
func (t *scriptT) Fatal(args ...any) { t.Log(args...); t.FailNow() }
func (t *scriptT) FailNow()          { panic(errFailNow) }
func (t *scriptT) Parallel()         {}
func (t *scriptT) Verbose() bool     { return t.r.opts.Verbose }

func (t *scriptT) Log(args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := fmt.Sprint(args...)
	t.log.WriteString(s)
	if !strings.HasSuffix(s, "\n") {
		t.log.WriteByte('\n')
	}
}

// Run runs a subtest of a scenario (testscript does not make any) as a
// scenario of its own, named parent/name.
func (t *scriptT) Run(name string, f func(testscript.T)) {
	t.r.Run(t.name+"/"+name, f)
}
