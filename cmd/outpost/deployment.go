package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"text/tabwriter"

	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
)

var deploymentCmd = hubCommand("deployment",
	"list, show or delete automatic deployments (made with outpost deploy --target-condition)",
	"list | show ID | delete ID",
	nil,
	runDeployment,
)

func runDeployment(ctx context.Context, h *hubCall) error {
	sub, args, err := h.sub(map[string]int{"list": 0, "show": 1, "delete": 1})
	if err != nil {
		return err
	}
	c, err := h.client()
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		var raw json.RawMessage
		if err := c.Do(ctx, http.MethodGet, "/configurations", nil, &raw); err != nil {
			return err
		}
		if !h.table {
			return h.writeJSON(raw)
		}
		var list []struct {
			ID              string `json:"id"`
			Priority        int    `json:"priority"`
			TargetCondition string `json:"targetCondition"`
			SystemMetrics   struct {
				Results map[string]int64 `json:"results"`
			} `json:"systemMetrics"`
		}
		if err := json.Unmarshal(raw, &list); err != nil {
			return fmt.Errorf("the hub's list of deployments: %w", err)
		}
		w := tabwriter.NewWriter(h.env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "ID\tPRIORITY\tTARGETED\tAPPLIED\tTARGET CONDITION")
		for _, d := range list {
			r := d.SystemMetrics.Results
			fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%s\n", d.ID, d.Priority, r["targetedCount"], r["appliedCount"], d.TargetCondition)
		}
		return w.Flush()
	case "show":
		var raw json.RawMessage
		if err := c.Do(ctx, http.MethodGet, hubclient.PathOf("configurations", args[0]), nil, &raw); err != nil {
			return err
		}
		return h.write(raw)
	default:
		return c.Do(ctx, http.MethodDelete, hubclient.PathOf("configurations", args[0]), nil, nil)
	}
}
