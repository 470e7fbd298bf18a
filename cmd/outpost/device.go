package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"slices"
	"text/tabwriter"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
	"github.com/outpost-edge/outpost/store/identity"
)

var deviceCmd = hubCommand("device",
	"create, update, list, show or delete devices on the hub",
	"create ID [--edge] [--parent EDGE] [--primary-key K] | update ID [--regenerate-keys] [--primary-key K] [--secondary-key K] [--status enabled|disabled] | list | show ID | delete ID",
	func(fs *flag.FlagSet) {
		fs.Bool("edge", false, "create: the device is an IoT Edge device (gets a deviceScope, can be a parent)")
		fs.String("parent", "", "create: the edge device this one connects through (its deviceScope goes into parentScopes)")
		keyFlags(fs)
		updateFlags(fs)
	},
	runDevice,
)

// deviceFlags are the flags each subcommand of device takes.
var deviceFlags = map[string][]string{
	"create": {"edge", "parent", "primary-key", "secondary-key"},
	"update": {"primary-key", "secondary-key", "regenerate-keys", "status"},
}

func runDevice(ctx context.Context, h *hubCall) error {
	sub, args, err := h.sub(map[string]int{"create": 1, "update": 1, "list": 0, "show": 1, "delete": 1})
	if err != nil {
		return err
	}
	for _, name := range []string{"edge", "parent", "primary-key", "secondary-key", "regenerate-keys", "status"} {
		if !slices.Contains(deviceFlags[sub], name) {
			if err := h.only(sub, name); err != nil {
				return err
			}
		}
	}
	auth, err := h.keys()
	if err != nil {
		return err
	}
	for _, id := range args {
		if err := checkID("device id", id); err != nil {
			return err
		}
	}
	if p := h.str("parent"); p != "" {
		if err := checkID("--parent", p); err != nil {
			return err
		}
	}
	c, err := h.client()
	if err != nil {
		return err
	}
	switch sub {
	case "create":
		return deviceCreate(ctx, h, c, args[0], auth)
	case "update":
		return updateIdentity(ctx, h, c, hubclient.PathOf("devices", args[0]), fmt.Sprintf("device %q", args[0]), auth)
	case "list":
		return deviceList(ctx, h, c)
	case "show":
		return showIdentity(ctx, h, c, hubclient.PathOf("devices", args[0]))
	default:
		return deleteIdentity(ctx, c, hubclient.PathOf("devices", args[0]))
	}
}

func deviceCreate(ctx context.Context, h *hubCall, c *hubclient.Client, id string, auth *identity.Authentication) error {
	dev := identity.JSON{
		DeviceID:       id,
		Status:         "enabled",
		Capabilities:   &identity.Capabilities{IoTEdge: h.get("edge").(bool)},
		Authentication: auth,
	}
	if parent := h.str("parent"); parent != "" {
		var p identity.JSON
		if err := c.Do(ctx, http.MethodGet, hubclient.PathOf("devices", parent), nil, &p); err != nil {
			return fmt.Errorf("parent device %q: %w", parent, err)
		}
		if (p.Capabilities == nil || !p.Capabilities.IoTEdge) || p.DeviceScope == "" {
			return fmt.Errorf("parent device %q is not an edge device (it has no deviceScope); a parent is created with `outpost device create %s --edge`", parent, parent)
		}
		dev.ParentScopes = []string{p.DeviceScope}
	}
	path := hubclient.PathOf("devices", id)
	if err := mustNotExist(ctx, c, path, fmt.Sprintf("device %q", id), "device show "+id, "device delete "+id); err != nil {
		return err
	}
	var raw json.RawMessage
	if err := c.Do(ctx, http.MethodPut, path, dev, &raw); err != nil {
		return err
	}
	if dev.ParentScopes != nil {
		fmt.Fprintf(h.env.Stderr, "note: device %q connects through edge %q: add ;GatewayHostName=<the edge's host name> to its connection string\n", id, h.str("parent"))
	}
	return writeIdentity(h, c, raw)
}

// updateFlags registers the flags of device update and module update.
func updateFlags(fs *flag.FlagSet) {
	fs.Bool("regenerate-keys", false, "update: the hub generates new primary and secondary keys (live sessions with the old ones end)")
	fs.String("status", "", "update: enabled or disabled (a disabled identity's live session ends, and it cannot connect)")
}

// updateIdentity changes the keys or status of the device or module at
// path: read from the hub, changed and written back (PUT), as IoT Hub's
// update.
func updateIdentity(ctx context.Context, h *hubCall, c *hubclient.Client, path, what string, keys *identity.Authentication) error {
	status, regen := h.str("status"), h.get("regenerate-keys").(bool)
	switch {
	case status != "" && status != identity.Enabled && status != identity.Disabled:
		return cli.Usagef("--status %q: want enabled or disabled", status)
	case regen && keys != nil:
		return cli.Usagef("--regenerate-keys and --primary-key/--secondary-key: give one or the other")
	case status == "" && !regen && keys == nil:
		return cli.Usagef("%s update: nothing to change; give --regenerate-keys, --primary-key, --secondary-key or --status", h.fs.Name())
	}
	var dev identity.JSON
	if err := c.Do(ctx, http.MethodGet, path, nil, &dev); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if status != "" {
		dev.Status = status
	}
	if regen || keys != nil {
		if dev.Authentication != nil && dev.Authentication.Type != "" && dev.Authentication.Type != identity.AuthSAS {
			return fmt.Errorf("%s uses %s (X.509) authentication: it has no keys to change", what, dev.Authentication.Type)
		}
		// Absent keys are generated by the hub; one key given keeps the
		// other.
		next := &identity.SymmetricKey{}
		if keys != nil && dev.Authentication != nil && dev.Authentication.SymmetricKey != nil {
			*next = *dev.Authentication.SymmetricKey
		}
		if keys != nil {
			if k := keys.SymmetricKey.PrimaryKey; k != nil {
				next.PrimaryKey = k
			}
			if k := keys.SymmetricKey.SecondaryKey; k != nil {
				next.SecondaryKey = k
			}
		}
		dev.Authentication = &identity.Authentication{Type: identity.AuthSAS, SymmetricKey: next}
	}
	var raw json.RawMessage
	if err := c.Do(ctx, http.MethodPut, path, dev, &raw); err != nil {
		return err
	}
	return writeIdentity(h, c, raw)
}

// mustNotExist refuses to create what exists already: a PUT would update
// it, and may give it new keys that lock out whatever uses the old ones.
func mustNotExist(ctx context.Context, c *hubclient.Client, path, what, show, del string) error {
	err := c.Do(ctx, http.MethodGet, path, nil, nil)
	switch {
	case err == nil:
		return fmt.Errorf("%s already exists; `outpost %s` prints it, `outpost %s` removes it", what, show, del)
	case hubclient.StatusOf(err) == http.StatusNotFound:
		return nil
	}
	return err
}

func deviceList(ctx context.Context, h *hubCall, c *hubclient.Client) error {
	return listIdentities(ctx, h, c, "/devices", "DEVICE ID\tSTATUS\tEDGE\tPARENT SCOPE\tAUTH", func(d identity.JSON) string {
		parent, auth := "-", "-"
		if len(d.ParentScopes) > 0 {
			parent = d.ParentScopes[0]
		}
		if d.Authentication != nil && d.Authentication.Type != "" {
			auth = d.Authentication.Type
		}
		return fmt.Sprintf("%s\t%s\t%t\t%s\t%s", d.DeviceID, dash(d.Status), d.Capabilities != nil && d.Capabilities.IoTEdge, parent, auth)
	})
}

// listIdentities prints the identities at path: as received, or with -o
// table one row each under header.
func listIdentities(ctx context.Context, h *hubCall, c *hubclient.Client, path, header string, row func(identity.JSON) string) error {
	var raw json.RawMessage
	if err := c.Do(ctx, http.MethodGet, path, nil, &raw); err != nil {
		return err
	}
	if !h.table {
		return h.writeJSON(raw)
	}
	var ids []identity.JSON
	if err := json.Unmarshal(raw, &ids); err != nil {
		return fmt.Errorf("the hub's list at %s: %w", path, err)
	}
	w := tabwriter.NewWriter(h.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, header)
	for _, id := range ids {
		fmt.Fprintln(w, row(id))
	}
	return w.Flush()
}

// showIdentity prints a device or module identity with its connection string.
func showIdentity(ctx context.Context, h *hubCall, c *hubclient.Client, path string) error {
	var raw json.RawMessage
	if err := c.Do(ctx, http.MethodGet, path, nil, &raw); err != nil {
		return err
	}
	return writeIdentity(h, c, raw)
}

// writeIdentity prints the identity the hub returned as received, plus a
// connectionString field with the primary key.
func writeIdentity(h *hubCall, c *hubclient.Client, raw json.RawMessage) error {
	var d struct {
		identity.JSON
		ConnectionString *string `json:"connectionString"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return fmt.Errorf("the hub's answer is not an identity: %w", err)
	}
	out := []byte(raw)
	if cs := c.ConnectionString(d.JSON); cs != "" && d.ConnectionString == nil {
		var err error
		if out, err = withField(raw, "connectionString", cs); err != nil {
			return err
		}
	}
	return h.writeJSON(out)
}

func deleteIdentity(ctx context.Context, c *hubclient.Client, path string) error {
	// If-Match: * as IoT Hub clients send it: delete whatever the version.
	return c.Send(ctx, hubclient.Request{Method: http.MethodDelete, Path: path, Header: http.Header{"If-Match": {"*"}}}, nil)
}

// keyFlags registers the flags that set an identity's keys on create.
func keyFlags(fs *flag.FlagSet) {
	fs.String("primary-key", "", "base64 primary key (create: default generated by the hub; device update: the new one)")
	fs.String("secondary-key", "", "base64 secondary key (create: default generated by the hub; device update: the new one)")
}

// keys returns the authentication that --primary-key and --secondary-key
// ask for, nil when neither is given.
func (h *hubCall) keys() (*identity.Authentication, error) {
	k := &identity.SymmetricKey{}
	for _, f := range []struct {
		flag string
		dst  *[]byte
	}{{"primary-key", &k.PrimaryKey}, {"secondary-key", &k.SecondaryKey}} {
		v := h.str(f.flag)
		if v == "" {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(b) < 16 || len(b) > 64 {
			return nil, cli.Usagef("--%s must be base64 of 16 to 64 bytes (IoT Hub's key sizes)", f.flag)
		}
		*f.dst = b
	}
	if k.PrimaryKey == nil && k.SecondaryKey == nil {
		return nil, nil
	}
	return &identity.Authentication{Type: identity.AuthSAS, SymmetricKey: k}, nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
