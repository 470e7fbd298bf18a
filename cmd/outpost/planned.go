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
	planned("hub", "run the cloud side: registry, twins, event log, REST API", "--data DIR --listen ADDR", 4),
	planned("device", "create, list, show or delete devices on the hub", "create|list|show|delete [ID]", 4),
	planned("module", "create, list, show or delete module identities on the hub", "create|list|show|delete D [M]", 4),
	planned("twin", "show or patch a device or module twin on the hub", "show|patch D[/M] [JSON]", 4),
	planned("deploy", "apply a deployment manifest to an edge device", "D MANIFEST.json", 4),
	planned("events", "read device-to-cloud events from the hub", "[--from N] [--follow] [--limit K]", 4),
	planned("c2d", "send a cloud-to-device message", "send D PAYLOAD [--prop k=v]", 4),
	planned("method", "invoke a direct method on a device or module", "invoke D[/M] NAME [JSON]", 4),
	planned("image", "push module images to the hub's image store", "push FILE", 5),
	planned("scenario", "replay testscript scenarios", "run FILE.txtar…", 4),
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
