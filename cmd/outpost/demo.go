package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
	"github.com/outpost-edge/outpost/cmd/internal/demo"
)

var demoCfg struct {
	dir      string
	headless bool
	duration time.Duration
	devices  int
}

var demoCmd = cli.Command{
	Name: "demo",
	Summary: "run a hub, an edge, the sample modules and simulated leaf devices on this machine, with no setup; " +
		"prints the dashboard URL, then a live view (keys: c cut the link, r restore, q quit) or, --headless, a scripted story",
	Usage: "[--dir DIR] [--headless] [--duration D] [--devices N]",
	Flags: func(fs *flag.FlagSet) {
		fs.StringVar(&demoCfg.dir, "dir", demo.DefaultDir, "directory of the demo's hub, edge and logs; a second run reuses it")
		fs.BoolVar(&demoCfg.headless, "headless", false, "run a scripted story (steady state, link cut, twin edits on both sides, link restored) and end with a line containing converged; exit 0 only if nothing was lost or duplicated and the twins are equal")
		fs.DurationVar(&demoCfg.duration, "duration", 0, fmt.Sprintf("--headless: the story's length (default %s; then up to 1m for convergence); live: stop after it (default: at q or Ctrl-C)", demo.DefaultDuration))
		fs.IntVar(&demoCfg.devices, "devices", demo.DefaultDevices, "simulated leaf devices")
	},
	Run: func(ctx context.Context, env cli.Env, fs *flag.FlagSet) error {
		if fs.NArg() > 0 {
			return cli.Usagef("unexpected argument %q", fs.Arg(0))
		}
		if demoCfg.duration < 0 || demoCfg.headless && demoCfg.duration > 0 && demoCfg.duration < 4*time.Second {
			return cli.Usagef("--duration %s: want at least 4s", demoCfg.duration)
		}
		if demoCfg.devices < 1 || demoCfg.devices > 100 {
			return cli.Usagef("--devices %d: want 1 to 100", demoCfg.devices)
		}
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find the outpost executable (the demo runs its hub, edge and modules from it): %w", err)
		}
		return demo.Run(ctx, demo.Options{Dir: demoCfg.dir, Executable: exe, Headless: demoCfg.headless,
			Duration: demoCfg.duration, Devices: demoCfg.devices, Stdout: env.Stdout, Stderr: env.Stderr, Stdin: os.Stdin})
	},
}
