package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
)

var versionCmd = cli.Command{
	Name:    "version",
	Summary: "print the version of outpost",
	Usage:   "",
	Run: func(_ context.Context, env cli.Env, fs *flag.FlagSet) error {
		if fs.NArg() > 0 {
			return cli.Usagef("version takes no arguments")
		}
		_, err := fmt.Fprintf(env.Stdout, "outpost %s %s/%s %s\n", cli.Version, runtime.GOOS, runtime.GOARCH, runtime.Version())
		return err
	},
}
