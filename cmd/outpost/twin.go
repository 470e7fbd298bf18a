package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
)

var twinCmd = hubCommand("twin",
	"show, patch or replace a device or module twin (tags, desired properties) on the hub",
	"show D[/M] | patch D[/M] JSON | replace D[/M] JSON  (D M for D/M is accepted too)",
	nil,
	runTwin,
)

// joinModule lets `twin SUB D M …` stand for `twin SUB D/M …`, the
// spelling of module: with one argument more than sub takes, the first
// two are the device and the module.
func joinModule(args []string, subs map[string]int) []string {
	if len(args) < 3 || len(args) != subs[args[0]]+2 || strings.Contains(args[1], "/") {
		return args
	}
	return append([]string{args[0], args[1] + "/" + args[2]}, args[3:]...)
}

// twinSubs are twin's subcommands and the arguments each takes.
var twinSubs = map[string]int{"show": 1, "patch": 2, "replace": 2}

const twinExample = `{"properties":{"desired":{"interval":10}}}`

func runTwin(ctx context.Context, h *hubCall) error {
	h.args = joinModule(h.args, twinSubs)
	sub, args, err := h.sub(twinSubs)
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
		if err := checkTwinDoc(what, b); err != nil {
			return cli.Usagef("%v", err)
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
	return h.write(raw)
}

// checkTwinDoc refuses a twin patch or replacement that would change
// nothing the user could have meant: the hub takes tags and desired
// properties, nothing else ({"desired":…} without "properties", a typo).
func checkTwinDoc(what string, doc json.RawMessage) error {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(doc, &top); err != nil {
		return err
	}
	hint := "want " + twinExample + ` or {"tags":{…}}`
	for k := range top {
		switch k {
		case "tags", "properties", "etag", "deviceId", "moduleId":
		default:
			return fmt.Errorf("%s: unknown field %q; %s", what, k, hint)
		}
	}
	if top["tags"] == nil && top["properties"] == nil {
		return fmt.Errorf("%s changes nothing: it has neither \"properties\" nor \"tags\"; %s", what, hint)
	}
	if p := top["properties"]; p != nil {
		var props map[string]json.RawMessage
		if err := json.Unmarshal(p, &props); err != nil {
			return fmt.Errorf("%s: \"properties\" must be an object: %v; %s", what, err, hint)
		}
		for k := range props {
			if k != "desired" {
				return fmt.Errorf("%s: properties.%s cannot be set here (the hub sets desired properties; reported ones come from the device); %s", what, k, hint)
			}
		}
	}
	return nil
}
