package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
	"github.com/outpost-edge/outpost/cmd/internal/scenario"
)

var scenarioCmd = cli.Command{
	Name:    "scenario",
	Summary: "replay testscript scenarios (hub and edge, link cuts, MQTT, twins) against this binary",
	Usage:   "run [-v] [-work] FILE.txtar…",
	Flags: func(fs *flag.FlagSet) {
		fs.Bool("v", false, "print every scenario's log, not only the failures'")
		fs.Bool("work", false, "keep each scenario's work directory and print where it is")
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
	switch {
	case len(args) == 0:
		return cli.Usagef("missing subcommand")
	case args[0] != "run":
		return cli.Usagef("unknown subcommand %q", args[0])
	case len(args) == 1:
		return cli.Usagef("no scenario files")
	}
	files := args[1:]
	for _, f := range files {
		if st, err := os.Stat(f); err != nil || st.IsDir() {
			return cli.Usagef("%s is not a scenario file", f)
		}
	}
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
