package main

import (
	"context"
	"flag"
	"slices"
	"strings"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
	"github.com/outpost-edge/outpost/cmd/internal/samples"
)

// sampleCmd runs the sample modules from the outpost binary itself, so a
// deployment can name the running executable as the image with
// createOptions {"Cmd":["sample","tempsensor"]} (as `outpost demo` does).
var sampleCmd = cli.Command{
	Name: "sample",
	Summary: "run a sample module of an edge deployment: tempsensor (a simulated temperature sensor) or filter (forwards readings above a threshold); " +
		`image: the outpost executable, createOptions {"Cmd":["sample","tempsensor"]}`,
	Usage: strings.Join(samples.Names(), "|"),
	Run: func(ctx context.Context, env cli.Env, fs *flag.FlagSet) error {
		names := strings.Join(samples.Names(), " or ")
		switch {
		case fs.NArg() == 0:
			return cli.Usagef("which sample? want %s", names)
		case fs.NArg() > 1:
			return cli.Usagef("unexpected argument %q: a sample takes its settings from its module twin", fs.Arg(1))
		case !slices.Contains(samples.Names(), fs.Arg(0)):
			return cli.Usagef("no sample %q: want %s", fs.Arg(0), names)
		}
		return samples.Run(ctx, fs.Arg(0), env.Stderr)
	},
}
