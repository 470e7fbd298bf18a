package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"text/tabwriter"

	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
	"github.com/outpost-edge/outpost/store/identity"
)

var moduleCmd = hubCommand("module",
	"create, list, show or delete module identities on the hub",
	"create D M [--primary-key K] | list D | show D M | delete D M",
	keyFlags,
	runModule,
)

func runModule(ctx context.Context, h *hubCall) error {
	sub, args, err := h.sub(map[string]int{"create": 2, "list": 1, "show": 2, "delete": 2})
	if err != nil {
		return err
	}
	if err := checkID("device id", args[0]); err != nil {
		return err
	}
	if len(args) == 2 {
		if err := checkID("module id", args[1]); err != nil {
			return err
		}
	}
	if sub != "create" {
		if err := h.only(sub, "primary-key", "secondary-key"); err != nil {
			return err
		}
	}
	auth, err := h.keys()
	if err != nil {
		return err
	}
	c, err := h.client()
	if err != nil {
		return err
	}
	switch sub {
	case "create":
		return moduleCreate(ctx, h, c, args[0], args[1], auth)
	case "list":
		return moduleList(ctx, h, c, args[0])
	case "show":
		return showIdentity(ctx, h, c, hubclient.PathOf("devices", args[0], "modules", args[1]))
	default:
		return deleteIdentity(ctx, c, hubclient.PathOf("devices", args[0], "modules", args[1]))
	}
}

func moduleCreate(ctx context.Context, h *hubCall, c *hubclient.Client, d, m string, auth *identity.Authentication) error {
	path := hubclient.PathOf("devices", d, "modules", m)
	ids := d + " " + m
	if err := mustNotExist(ctx, c, path, fmt.Sprintf("module %q of device %q", m, d), "module show "+ids, "module delete "+ids); err != nil {
		return err
	}
	var raw json.RawMessage
	if err := c.Do(ctx, http.MethodPut, path, identity.JSON{DeviceID: d, ModuleID: m, Authentication: auth}, &raw); err != nil {
		return err
	}
	return writeIdentity(h, c, raw)
}

func moduleList(ctx context.Context, h *hubCall, c *hubclient.Client, d string) error {
	var raw json.RawMessage
	if err := c.Do(ctx, http.MethodGet, hubclient.PathOf("devices", d, "modules"), nil, &raw); err != nil {
		return err
	}
	if !h.table {
		return h.writeJSON(raw)
	}
	var mods []identity.JSON
	if err := json.Unmarshal(raw, &mods); err != nil {
		return fmt.Errorf("the hub's module list: %w", err)
	}
	w := tabwriter.NewWriter(h.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "MODULE ID\tSTATUS")
	for _, m := range mods {
		fmt.Fprintf(w, "%s\t%s\n", m.ModuleID, dash(m.Status))
	}
	return w.Flush()
}
