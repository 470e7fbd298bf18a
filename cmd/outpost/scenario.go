package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
	"github.com/outpost-edge/outpost/cmd/internal/scenario"
)

var scenarioCmd = cli.Command{
	Name: "scenario",
	Summary: "replay testscript scenarios (hub and edge, link cuts, MQTT, twins) against this binary; " +
		"`list` and `show` the ready ones built in (docs/scenarios.md)",
	Usage: "list [-o table|json] | show NAME | run [-v] [-work] NAME|FILE.txtar…",
	Flags: func(fs *flag.FlagSet) {
		fs.Bool("v", false, "run: print every scenario's log, not only the failures'")
		fs.Bool("work", false, "run: keep each scenario's work directory and print where it is")
		fs.String("o", "table", "list: output, table or json")
	},
	Run: runScenario,
}

func runScenario(ctx context.Context, env cli.Env, fs *flag.FlagSet) error {
	args, err := interspersed(fs)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(args) == 0 {
		return cli.Usagef("missing subcommand: list, show or run")
	}
	switch args[0] {
	case "list":
		return scenarioList(env, fs.Lookup("o").Value.String(), args[1:])
	case "show":
		return scenarioShow(env, args[1:])
	case "run":
		return scenarioRun(ctx, env, fs, args[1:])
	}
	return cli.Usagef("unknown subcommand %q: list, show or run", args[0])
}

// scenarioList prints the library: name and summary, one per line.
func scenarioList(env cli.Env, output string, args []string) error {
	if len(args) > 0 {
		return cli.Usagef("list takes no arguments")
	}
	lib := scenario.Library()
	switch output {
	case "json":
		type item struct {
			Name    string `json:"name"`
			Summary string `json:"summary"`
		}
		out := make([]item, 0, len(lib))
		for _, e := range lib {
			out = append(out, item{e.Name, e.Summary})
		}
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	case "table":
		w := tabwriter.NewWriter(env.Stdout, 0, 8, 2, ' ', 0)
		for _, e := range lib {
			fmt.Fprintf(w, "%s\t%s\n", e.Name, e.Summary)
		}
		return w.Flush()
	}
	return cli.Usagef("-o %q: want table or json", output)
}

// scenarioShow prints a library scenario as it is, to copy and adapt.
func scenarioShow(env cli.Env, args []string) error {
	if len(args) != 1 {
		return cli.Usagef("show takes one scenario name (outpost scenario list names them)")
	}
	e, ok := scenario.Find(args[0])
	if !ok {
		return cli.Usagef("no scenario %q in the library (outpost scenario list names them)", args[0])
	}
	_, err := io.WriteString(env.Stdout, e.Text)
	return err
}

// scenarioRun runs scenario files and library scenarios, by file name or
// by name.
func scenarioRun(ctx context.Context, env cli.Env, fs *flag.FlagSet, args []string) error {
	if len(args) == 0 {
		return cli.Usagef("no scenario: name a file or one of `outpost scenario list`")
	}
	files, cleanupFiles, err := scenarioFiles(args)
	if err != nil {
		return err
	}
	defer cleanupFiles()
	bin, cleanup, err := outpostDir()
	if err != nil {
		return err
	}
	defer cleanup()
	// The first interrupt stops further scenarios from starting (the running
	// one's processes get it too); a second one ends this process at once.
	defer context.AfterFunc(ctx, func() { signal.Reset(os.Interrupt, syscall.SIGTERM) })()
	start := time.Now()
	res, err := scenario.Run(ctx, files, scenario.Options{
		Stdout:   env.Stdout,
		Verbose:  fs.Lookup("v").Value.String() == "true",
		KeepWork: fs.Lookup("work").Value.String() == "true",
		Path:     []string{bin},
	})
	switch {
	case err != nil:
		return err
	case res.Failed > 0:
		return fmt.Errorf("%d of %d scenarios failed", res.Failed, len(files))
	case res.NotRun > 0:
		return fmt.Errorf("interrupted: %d of %d scenarios did not run", res.NotRun, len(files))
	}
	skipped := ""
	if res.Skipped > 0 {
		skipped = fmt.Sprintf(", %d skipped", res.Skipped)
	}
	fmt.Fprintf(env.Stdout, "PASS: %d scenarios%s in %.2fs\n", len(files), skipped, time.Since(start).Seconds())
	return nil
}

// scenarioFiles resolves each argument to a file: an existing file as it
// is, else a library scenario written to a temporary directory (which
// cleanup removes) under its own name, so the report names it.
func scenarioFiles(args []string) (files []string, cleanup func(), err error) {
	cleanup = func() {}
	var dir string
	for _, a := range args {
		if st, err := os.Stat(a); err == nil && !st.IsDir() {
			files = append(files, a)
			continue
		}
		e, ok := scenario.Find(a)
		if !ok {
			cleanup()
			return nil, nil, cli.Usagef("%s is neither a scenario file nor a scenario of the library (outpost scenario list)", a)
		}
		if dir == "" {
			if dir, err = os.MkdirTemp("", "outpost-library-"); err != nil {
				return nil, nil, fmt.Errorf("write library scenario %s: %w", a, err)
			}
			cleanup = func() { _ = os.RemoveAll(dir) }
		}
		f := filepath.Join(dir, e.Name+".txtar")
		if err := os.WriteFile(f, []byte(e.Text), 0o644); err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("write library scenario %s: %w", a, err)
		}
		files = append(files, f)
	}
	return files, cleanup, nil
}

// outpostDir returns a directory whose `outpost` is this very binary, to put
// first in the scenarios' PATH: the binary's own when it is called outpost,
// else a temporary one with a link to it, which cleanup removes.
func outpostDir() (dir string, cleanup func(), err error) {
	exe, err := os.Executable()
	if err != nil {
		return "", nil, fmt.Errorf("find this binary for `exec outpost`: %w", err)
	}
	if strings.TrimSuffix(filepath.Base(exe), ".exe") == "outpost" {
		return filepath.Dir(exe), func() {}, nil
	}
	dir, err = os.MkdirTemp("", "outpost-bin-")
	if err != nil {
		return "", nil, fmt.Errorf("link this binary as outpost: %w", err)
	}
	cleanup = func() { _ = os.RemoveAll(dir) }
	if err := os.Symlink(exe, filepath.Join(dir, "outpost"+filepath.Ext(exe))); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("link this binary as outpost: %w", err)
	}
	return dir, cleanup, nil
}
