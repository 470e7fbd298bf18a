package main

import (
	"context"
	"fmt"

	"github.com/outpost-edge/outpost/cmd/internal/check"
	"github.com/outpost-edge/outpost/cmd/internal/cli"
)

// edgeConfigCmd is edgeCmd for reading the edge's configuration (set in
// init: edgeCmd's Run leads here, and a variable may not refer to itself).
var edgeConfigCmd cli.Command

func init() {
	edgeConfigCmd = cli.Command{Name: edgeCmd.Name, Flags: edgeCmd.Flags, Config: true, Secrets: edgeCmd.Secrets}
}

// edgeCheck is `outpost edge check`: diagnostics of an edge, running or
// not, one finding per line (cmd/internal/check). Exit 1 when a finding is
// an error.
func edgeCheck(ctx context.Context, env cli.Env, args []string) error {
	fs := cli.SubFlags("edge check", "[--data DIR | --api ADDR] [--config FILE] [--connection-string-file F] [-o table|json]",
		"diagnose an edge, running or not: one finding per line (✓ ok, ‼ warning, × error) with what to do; exit 1 on an error")
	data := fs.String("data", edgeCfg.DataDir, "the edge's data directory (ready.json tells whether it runs and where its API is)")
	api := fs.String("api", "", "the running edge's --api address (default: from --data)")
	config := fs.String("config", "", "the edge's --config file: its data directory, listeners, certificates, hub URL and key")
	csFile := fs.String("connection-string-file", "", "file holding the edge's connection string, to check the credentials with the hub (or env OUTPOST_EDGE_CONNECTION_STRING)")
	out := fs.String("o", "table", "output: table or json")
	if err := cli.Parse(env, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.SubUsagef(fs, "edge check takes no arguments, got %q", fs.Arg(0))
	}
	if *out != "table" && *out != "json" {
		return cli.SubUsagef(fs, "-o %q: want table or json", *out)
	}
	cs, err := loadEdgeConfig(env, *config, *csFile)
	if err != nil {
		return err
	}
	c := edgeCfg.Config
	dir := *data
	if dir == "" {
		dir = c.DataDir
	}
	findings := check.Run(ctx, check.Options{DataDir: dir, API: *api, Config: c, ConnectionString: cs})
	if *out == "json" {
		if err := check.PrintJSON(env.Stdout, findings); err != nil {
			return err
		}
	} else {
		check.Print(env.Stdout, findings)
	}
	if check.Failed(findings) {
		return fmt.Errorf("the edge check found errors (the lines marked × above say what to do)")
	}
	return nil
}

// loadEdgeConfig reads the edge's --config file and connection string file
// into edgeCfg, as `outpost edge` would, and returns the connection string
// (also from env OUTPOST_EDGE_CONNECTION_STRING).
func loadEdgeConfig(env cli.Env, config, csFile string) (string, error) {
	if config == "" && csFile == "" {
		return edgeCfg.ConnectionString, nil // from the environment, when given
	}
	var load []string
	if config != "" {
		load = append(load, "--config", config)
	}
	if csFile != "" {
		load = append(load, "--connection-string-file", csFile)
	}
	if _, err := cli.Load(edgeConfigCmd, env, load); err != nil {
		return "", err
	}
	return edgeCfg.ConnectionString, nil
}
