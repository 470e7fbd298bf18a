package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"strings"

	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
	"github.com/outpost-edge/outpost/store/identity"
)

var moduleCmd = hubCommand("module",
	"create, update, list, show or delete module identities on the hub",
	"create D M [--primary-key K] | update D M [--regenerate-keys] [--primary-key K] [--secondary-key K] [--status enabled|disabled] | list D | show D M [-o cs] | connection-string D M | delete D M  (D/M for D M is accepted everywhere)",
	func(fs *flag.FlagSet) {
		keyFlags(fs)
		updateFlags(fs)
	},
	runModule,
)

func runModule(ctx context.Context, h *hubCall) error {
	h.args = splitModule(h.args)
	sub, args, err := h.sub(map[string]int{"create": 2, "update": 2, "list": 1, "show": 2, "connection-string": 2, "delete": 2})
	if err != nil {
		return err
	}
	if err := h.csFor(sub); err != nil {
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
	if sub != "create" && sub != "update" {
		if err := h.only(sub, "primary-key", "secondary-key"); err != nil {
			return err
		}
	}
	if sub != "update" {
		if err := h.only(sub, "regenerate-keys", "status"); err != nil {
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
	case "update":
		return updateIdentity(ctx, h, c, hubclient.PathOf("devices", args[0], "modules", args[1]),
			fmt.Sprintf("module %q of device %q", args[1], args[0]), auth)
	case "list":
		return moduleList(ctx, h, c, args[0])
	case "show", "connection-string":
		return showIdentity(ctx, h, c, hubclient.PathOf("devices", args[0], "modules", args[1]))
	default:
		return deleteIdentity(ctx, c, hubclient.PathOf("devices", args[0], "modules", args[1]))
	}
}

// splitModule lets `module SUB D/M` stand for `module SUB D M`, the
// spelling of twin and method: args is [SUB D/M] → [SUB D M].
func splitModule(args []string) []string {
	if len(args) != 2 || args[0] == "list" {
		return args
	}
	d, m, ok := strings.Cut(args[1], "/")
	if !ok {
		return args
	}
	return []string{args[0], d, m}
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
	return listIdentities(ctx, h, c, hubclient.PathOf("devices", d, "modules"), "MODULE ID\tSTATUS", func(m identity.JSON) string {
		return m.ModuleID + "\t" + dash(m.Status)
	})
}
