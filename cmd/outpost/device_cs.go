package main

import (
	"context"
	"fmt"
	"net/http"

	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
	"github.com/outpost-edge/outpost/store/identity"
)

// deviceConnectionString prints a device's connection string (its primary
// key) and nothing else, so that a script or a walkthrough can keep it in a
// file without copying it out of JSON:
//
//	outpost device connection-string gw1 > gw1.cs
func deviceConnectionString(ctx context.Context, h *hubCall, c *hubclient.Client, id string) error {
	var d identity.JSON
	if err := c.Do(ctx, http.MethodGet, hubclient.PathOf("devices", id), nil, &d); err != nil {
		return err
	}
	cs := c.ConnectionString(d)
	if cs == "" {
		return fmt.Errorf("device %q has no key to put in a connection string", id)
	}
	_, err := fmt.Fprintln(h.env.Stdout, cs)
	return err
}
