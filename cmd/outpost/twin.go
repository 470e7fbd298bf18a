package main

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
)

var twinCmd = hubCommand("twin",
	"show, patch or replace a device or module twin (tags, desired properties) on the hub",
	"show D[/M] | patch D[/M] JSON | replace D[/M] JSON",
	nil,
	runTwin,
)

const twinExample = `{"properties":{"desired":{"interval":10}}}`

func runTwin(ctx context.Context, h *hubCall) error {
	sub, args, err := h.sub(map[string]int{"show": 1, "patch": 2, "replace": 2})
	if err != nil {
		return err
	}
	d, m, err := target(args[0])
	if err != nil {
		return err
	}
	path := hubclient.PathOf("twins", d)
	if m != "" {
		path = hubclient.PathOf("twins", d, "modules", m)
	}
	method, what := http.MethodGet, ""
	switch sub {
	case "patch":
		method, what = http.MethodPatch, "the twin patch"
	case "replace":
		method, what = http.MethodPut, "the twin"
	}
	var body any
	if what != "" {
		b, err := jsonArg(what, args[1], true, twinExample)
		if err != nil {
			return err
		}
		body = b
	}
	c, err := h.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := c.Do(ctx, method, path, body, &raw); err != nil {
		return err
	}
	return h.writeJSON(raw)
}
