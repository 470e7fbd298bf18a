package main

import (
	"os"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
)

// commands is the table of every subcommand; each lives in its own file.
var commands = []cli.Command{
	versionCmd,
	edgeCmd,
	tokenCmd,
	hubCmd,
	deviceCmd,
	moduleCmd,
	twinCmd,
	deployCmd,
	deploymentCmd,
	jobCmd,
	eventsCmd,
	c2dCmd,
	methodCmd,
	imageCmd,
	scenarioCmd,
	sampleCmd,
	demoCmd,
	mqttCmd,
}

func run(args []string) int {
	return cli.Main(args, commands, cli.Env{Stdout: os.Stdout, Stderr: os.Stderr})
}
