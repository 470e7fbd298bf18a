package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
)

// plannedCmds are the subcommands of the external contract
// (shared/design/CONTRACT.md) that later issues build. Each moves to a file of
// its own when it is implemented; until then it says plainly that it is not
// there yet and exits 1.
var plannedCmds = []cli.Command{
	planned("image", "push module images to the hub's image store", "push FILE", 5),
}

func planned(name, summary, usage string, issue int) cli.Command {
	return cli.Command{
		Name:    name,
		Summary: summary + " (not implemented yet)",
		Usage:   usage,
		Run: func(context.Context, cli.Env, *flag.FlagSet) error {
			return fmt.Errorf("outpost %s is not implemented yet (planned in issue %d)", name, issue)
		},
	}
}
