package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
	"github.com/outpost-edge/outpost/store/identity"
)

// Names of what the demo creates at its hub.
const (
	HostName = "outpost-demo" // the hub's --hostname: in every connection string, whatever port the hub has
	EdgeID   = "demo-edge"
)

// leafID is the id of simulated device i (from 1).
func leafID(i int) string { return fmt.Sprintf("leaf-%d", i) }

// ensureDevice returns device dev from the hub, creating it when absent:
// a second run on the same directory finds the identities (and keys) of
// the first.
func ensureDevice(ctx context.Context, c *hubclient.Client, dev identity.JSON) (identity.JSON, error) {
	path := hubclient.PathOf("devices", dev.DeviceID)
	var got identity.JSON
	err := c.Do(ctx, http.MethodGet, path, nil, &got)
	if err == nil {
		return got, nil
	}
	if hubclient.StatusOf(err) != http.StatusNotFound {
		return got, fmt.Errorf("read device %s at the hub: %w", dev.DeviceID, err)
	}
	if err := c.Do(ctx, http.MethodPut, path, dev, &got); err != nil {
		return got, fmt.Errorf("create device %s at the hub: %w", dev.DeviceID, err)
	}
	return got, nil
}

// ensureIdentities creates (or finds) the edge and n leaf devices behind
// it, and returns their connection strings: the edge's first.
func ensureIdentities(ctx context.Context, c *hubclient.Client, n int) ([]string, error) {
	edge, err := ensureDevice(ctx, c, identity.JSON{DeviceID: EdgeID, Status: identity.Enabled,
		Capabilities: &identity.Capabilities{IoTEdge: true}})
	if err != nil {
		return nil, err
	}
	if edge.DeviceScope == "" {
		return nil, fmt.Errorf("device %s at the hub is not an edge device (no deviceScope); delete the demo's directory and start again", EdgeID)
	}
	css := []string{c.ConnectionString(edge)}
	for i := 1; i <= n; i++ {
		leaf, err := ensureDevice(ctx, c, identity.JSON{DeviceID: leafID(i), Status: identity.Enabled,
			ParentScopes: []string{edge.DeviceScope}})
		if err != nil {
			return nil, err
		}
		css = append(css, c.ConnectionString(leaf))
	}
	for i, cs := range css {
		if cs == "" {
			return nil, fmt.Errorf("device %d at the hub has no symmetric key; delete the demo's directory and start again", i)
		}
	}
	return css, nil
}

// Routes of the demo's deployment: the sensor's readings through the
// filter, the filter's and the leaf devices' messages to the hub.
var routes = map[string]string{
	"sensorToFilter":   `FROM /messages/modules/sensor/outputs/temperatureOutput INTO BrokeredEndpoint("/modules/filter/inputs/input1")`,
	"filterToUpstream": `FROM /messages/modules/filter/outputs/output1 INTO $upstream`,
	"leafToUpstream":   `FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO $upstream`,
}

// manifest is the demo's deployment: the sample sensor and filter, both
// run from exe (`outpost sample tempsensor|filter`), and the routes.
func manifest(exe string) map[string]any {
	module := func(sample string, order int) map[string]any {
		create, _ := json.Marshal(map[string]any{"Cmd": []string{"sample", sample}})
		return map[string]any{"type": "process", "status": "running", "restartPolicy": "always", "startupOrder": order,
			"settings": map[string]any{"image": exe, "createOptions": string(create)}}
	}
	desired := func(v any) map[string]any { return map[string]any{"properties.desired": v} }
	return map[string]any{"modulesContent": map[string]any{
		"$edgeAgent": desired(map[string]any{"schemaVersion": "1.1",
			"modules": map[string]any{"filter": module("filter", 1), "sensor": module("tempsensor", 2)}}),
		"$edgeHub": desired(map[string]any{"schemaVersion": "1.1", "routes": routes}),
		"sensor":   desired(map[string]any{"SendInterval": 0.5, "MachineTempMin": 20, "MachineTempMax": 40, "MachineTempStep": 2}),
		"filter":   desired(map[string]any{"TemperatureThreshold": 30}),
	}}
}

// deploy applies the demo's deployment to the edge through the hub.
func deploy(ctx context.Context, c *hubclient.Client, exe string) error {
	path := hubclient.PathOf("devices", EdgeID, "applyConfigurationContent")
	if err := c.Do(ctx, http.MethodPost, path, manifest(exe), nil); err != nil {
		return fmt.Errorf("deploy the sample modules to %s: %w", EdgeID, err)
	}
	return nil
}

// patchDesired merges props into device's desired properties at the hub.
func patchDesired(ctx context.Context, c *hubclient.Client, device string, props map[string]any) error {
	body := map[string]any{"properties": map[string]any{"desired": props}}
	if err := c.Do(ctx, http.MethodPatch, hubclient.PathOf("twins", device), body, nil); err != nil {
		return fmt.Errorf("patch the desired properties of %s at the hub: %w", device, err)
	}
	return nil
}
