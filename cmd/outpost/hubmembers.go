package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
	"github.com/outpost-edge/outpost/cmd/internal/hub"
	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
)

// `outpost hub members` and `outpost hub leave NODE-ID`: a hub cluster's
// membership, through any node's REST API (the leader answers).

var hubMembersCmd = hubCommand("hub members", "list the nodes of a hub cluster: id, raft and API addresses, leader, state, last log index",
	"[--hub-url URL] [-o json|table]", nil, func(ctx context.Context, h *hubCall) error {
		if len(h.args) > 0 {
			return cli.Usagef("hub members takes no argument, got %q", h.args[0])
		}
		c, err := h.client()
		if err != nil {
			return err
		}
		var raw json.RawMessage
		if err := c.Do(ctx, "GET", "/cluster/members", nil, &raw); err != nil {
			return err
		}
		if !h.table {
			return h.writeJSON(raw)
		}
		var members []hub.Member
		if err := json.Unmarshal(raw, &members); err != nil {
			return fmt.Errorf("the hub's member list: %w", err)
		}
		w := tabwriter.NewWriter(h.env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "ID\tSTATE\tLEADER\tLAST INDEX\tRAFT\tAPI\tSUFFRAGE")
		for _, m := range members {
			fmt.Fprintf(w, "%s\t%s\t%v\t%d\t%s\t%s\t%s\n", m.ID, m.State, m.Leader, m.LastIndex, m.Raft, m.API, m.Suffrage)
		}
		return w.Flush()
	})

var hubLeaveCmd = hubCommand("hub leave", "remove a node from a hub cluster (stop it first; its data directory can then be deleted)",
	"NODE-ID [--hub-url URL]", nil, func(ctx context.Context, h *hubCall) error {
		if len(h.args) != 1 {
			return cli.Usagef("hub leave takes one argument, the node id")
		}
		c, err := h.client()
		if err != nil {
			return err
		}
		if err := c.Do(ctx, "DELETE", hubclient.PathOf("cluster", "members", h.args[0]), nil, nil); err != nil {
			return err
		}
		return h.writeValue(map[string]string{"left": h.args[0]})
	})

func hubMembers(ctx context.Context, env cli.Env, args []string) error {
	return runSub(ctx, env, hubMembersCmd, args)
}

func hubLeave(ctx context.Context, env cli.Env, args []string) error {
	return runSub(ctx, env, hubLeaveCmd, args)
}

// runSub runs a hub-client command given as a subcommand of another.
func runSub(ctx context.Context, env cli.Env, cmd cli.Command, args []string) error {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs := cli.SubFlags(cmd.Name, cmd.Usage, cmd.Summary)
			cmd.Flags(fs)
			return cli.Parse(env, fs, []string{"-h"})
		}
	}
	fs, err := cli.Load(cmd, env, args)
	if err != nil {
		return err
	}
	return cmd.Run(ctx, env, fs)
}
