package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
	"github.com/outpost-edge/outpost/cmd/internal/edge"
	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
	"github.com/outpost-edge/outpost/sync/hub/query"
)

var deployCmd = hubCommand("deploy",
	"apply a deployment manifest ({\"modulesContent\":…} or az's {\"content\":{…}}) to an edge device, or to every edge a target condition matches",
	"D MANIFEST.json [--no-check] [--wait [--timeout D]] | --target-condition COND --id NAME [--priority N] MANIFEST.json",
	func(fs *flag.FlagSet) {
		fs.String("target-condition", "", "deploy at scale: create (or update) the automatic deployment --id for every edge device whose twin matches this condition of IoT Hub's query language, e.g. \"tags.env='prod'\" (see outpost deployment)")
		fs.String("id", "", "with --target-condition: the deployment's name (a-z, 0-9, -, …; up to 128)")
		fs.Int("priority", 0, "with --target-condition: of the deployments that target an edge the one with the highest priority applies; layered ones (their manifest sets \"properties.desired.<path>\" keys) add to it in priority order")
		fs.Bool("no-check", false, "send the manifest without checking it here first (the edge still refuses what it cannot apply, in $edgeAgent's and $edgeHub's reported lastDesiredStatus)")
		fs.Bool("wait", false, "after sending, wait until the edge reports the deployment applied ($edgeAgent's and $edgeHub's reported lastDesiredStatus 200 for its version); exit 1 with the edge's reason if it refuses it, or on --timeout")
		fs.Duration("timeout", 2*time.Minute, "with --wait: how long to wait for the edge (it must be online to hear of the deployment)")
	},
	runDeploy,
)

func runDeploy(ctx context.Context, h *hubCall) error {
	if h.isSet("target-condition") {
		return deployAtScale(ctx, h)
	}
	if err := h.only("a device deployment (without --target-condition)", "id", "priority"); err != nil {
		return err
	}
	if len(h.args) != 2 {
		return cli.Usagef("deploy takes a device id and a manifest file, got %d argument(s)", len(h.args))
	}
	d, file := h.args[0], h.args[1]
	if err := checkID("device id", d); err != nil {
		return err
	}
	mc, err := readManifest(h, file, true)
	if err != nil {
		return err
	}
	c, err := h.client()
	if err != nil {
		return err
	}
	body := struct {
		ModulesContent json.RawMessage `json:"modulesContent"`
	}{mc}
	wait, timeout := h.get("wait").(bool), h.get("timeout").(time.Duration)
	if !wait && h.isSet("timeout") {
		return cli.Usagef("--timeout applies to --wait")
	}
	if timeout <= 0 {
		return cli.Usagef("--timeout %s: want a positive duration", timeout)
	}
	var raw json.RawMessage
	if err := c.Do(ctx, http.MethodPost, hubclient.PathOf("devices", d, "applyConfigurationContent"), body, &raw); err != nil {
		return err
	}
	if err := h.write(raw); err != nil || !wait {
		return err
	}
	return waitApplied(ctx, h, c, d, systemModules(mc), timeout)
}

// systemModules lists the system modules ($edgeAgent, $edgeHub) that the
// manifest's modulesContent configures: those report whether they applied it.
func systemModules(mc json.RawMessage) []string {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(mc, &m) // modulesContent checked it is an object
	var out []string
	for _, name := range []string{"$edgeAgent", "$edgeHub"} {
		if _, ok := m[name]; ok {
			out = append(out, name)
		}
	}
	return out
}

// modulesContent finds the modulesContent object of a manifest, at the top
// or under "content" (what `az iot edge deployment create` takes).
func modulesContent(data []byte) (json.RawMessage, error) {
	var m struct {
		ModulesContent json.RawMessage `json:"modulesContent"`
		Content        *struct {
			ModulesContent json.RawMessage `json:"modulesContent"`
		} `json:"content"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	mc := m.ModulesContent
	if m.Content != nil && m.Content.ModulesContent != nil {
		if mc != nil {
			return nil, errors.New(`it has both "modulesContent" and "content.modulesContent"; keep one`)
		}
		mc = m.Content.ModulesContent
	}
	mc = bytes.TrimSpace(mc)
	switch {
	case mc == nil:
		return nil, errors.New(`it has no "modulesContent" (want {"modulesContent":{"$edgeAgent":…,"$edgeHub":…}} or {"content":{"modulesContent":…}})`)
	case mc[0] != '{':
		return nil, errors.New(`"modulesContent" is not a JSON object`)
	}
	return mc, nil
}

// deployAtScale is deploy --target-condition: it writes the automatic
// deployment --id (PUT /configurations/{id}), keeping what the hub holds
// of it but the target condition and priority (its content never
// changes once created).
func deployAtScale(ctx context.Context, h *hubCall) error {
	if err := h.only("--target-condition", "wait", "timeout"); err != nil {
		return err
	}
	if len(h.args) != 1 {
		return cli.Usagef("deploy --target-condition takes one manifest file, got %d argument(s)", len(h.args))
	}
	id, cond := h.str("id"), h.str("target-condition")
	if id == "" {
		return cli.Usagef("deploy --target-condition needs --id NAME, the deployment's name")
	}
	if strings.TrimSpace(cond) == "" {
		return cli.Usagef("--target-condition is empty: give a condition such as \"tags.env='prod'\" (\"*\" for every edge)")
	}
	if _, err := query.ParseCondition(cond); err != nil {
		return cli.Usagef("--target-condition: %v", err)
	}
	file := h.args[0]
	mc, err := readManifest(h, file, false)
	if err != nil {
		return err
	}
	c, err := h.client()
	if err != nil {
		return err
	}
	body := map[string]any{"id": id, "targetCondition": cond, "priority": h.get("priority").(int),
		"content": map[string]json.RawMessage{"modulesContent": mc}}
	var raw json.RawMessage
	if err := c.Do(ctx, http.MethodPut, hubclient.PathOf("configurations", id), body, &raw); err != nil {
		return err
	}
	return h.write(raw)
}

// layered reports whether a manifest's modulesContent sets paths below
// properties.desired (a layered deployment) rather than whole desired
// properties; those are checked by the hub when merged.
func layered(mc json.RawMessage) bool {
	var m map[string]map[string]json.RawMessage
	if json.Unmarshal(mc, &m) != nil {
		return false
	}
	for _, content := range m {
		for k := range content {
			if strings.HasPrefix(k, "properties.desired.") {
				return true
			}
		}
	}
	return false
}

// readManifest reads a deployment manifest's modulesContent and, unless
// --no-check, checks it as the edge will. A layered manifest (paths below
// properties.desired, at scale only: device false) is checked by the hub
// when merged.
func readManifest(h *hubCall, file string, device bool) (json.RawMessage, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read the manifest: %w", err)
	}
	mc, err := modulesContent(data)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", file, err)
	}
	if h.get("no-check").(bool) || (!device && layered(mc)) {
		return mc, nil
	}
	if err := edge.CheckManifest(mc); err != nil {
		return nil, fmt.Errorf("manifest %s (nothing sent; --no-check sends it anyway):\n%w", file, err)
	}
	return mc, nil
}
