package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
	"github.com/outpost-edge/outpost/cmd/internal/localapi"
)

// edgeClients lists the MQTT clients connected to a running edge:
// outpost edge clients [--data DIR] [--api ADDR] [-o json|table].
func edgeClients(ctx context.Context, env cli.Env, args []string) error {
	fs := cli.SubFlags("edge clients", "--data DIR [--api ADDR] [-o json|table]",
		"list the MQTT clients connected to a running edge: identity, listener, remote address, protocol, since when, subscriptions, messages in flight")
	api := fs.String("api", "", "the edge's --api address (default: from --data)")
	data := fs.String("data", edgeCfg.DataDir, "the edge's data directory: its API address (ready.json) and operator token (api-token)")
	out := fs.String("o", "json", "output: json or table")
	if err := cli.Parse(env, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.SubUsagef(fs, "edge clients takes no arguments, got %q", fs.Arg(0))
	}
	if *out != "json" && *out != "table" {
		return cli.SubUsagef(fs, "-o %q: want json or table", *out)
	}
	c, err := edgeClient(*data, *api, true)
	if err != nil {
		return err
	}
	cs, err := c.Clients(ctx)
	if err != nil {
		return err
	}
	if *out == "table" {
		return printClients(env.Stdout, cs.Clients, time.Now())
	}
	enc := json.NewEncoder(env.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(cs)
}

// printClients writes the client list for people, one row per client.
func printClients(w io.Writer, cs []localapi.MQTTClient, now time.Time) error {
	if len(cs) == 0 {
		_, err := fmt.Fprintln(w, "no MQTT clients connected")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT ID\tLISTENER\tREMOTE\tPROTOCOL\tCONNECTED\tSUBS\tIN FLIGHT\tRECEIVED\tDELIVERED")
	for _, c := range cs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s ago\t%d\t%d\t%d\t%d\n", oneLineText(c.ClientID), c.Listener, oneLineText(c.RemoteAddr),
			c.Protocol, now.Sub(c.ConnectedSince).Round(time.Second), c.Subscriptions, c.Inflight, c.Received, c.Delivered)
	}
	return tw.Flush()
}
