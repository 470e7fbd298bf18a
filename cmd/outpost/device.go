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
	"create ID [--edge] [--parent EDGE] [--primary-key K | --auth x509-ca | --auth x509-thumbprint --thumbprint T [--secondary-thumbprint T2]] | update ID [--regenerate-keys] [--primary-key K] [--secondary-key K] [--status enabled|disabled] | list | show ID [-o cs] | connection-string ID | delete ID",
	func(fs *flag.FlagSet) {
		fs.Bool("edge", false, "create: the device is an IoT Edge device (gets a deviceScope, can be a parent)")
		fs.String("parent", "", "create: the edge device this one connects through (its deviceScope goes into parentScopes)")
		fs.String("auth", "sas", "create: how the device authenticates, as az's --am: sas (keys), x509-ca (a certificate signed by a CA the edge trusts, --client-ca) or x509-thumbprint (a self-signed certificate, --thumbprint)")
		fs.String("thumbprint", "", "create --auth x509-thumbprint: hex SHA-1 or SHA-256 of the device certificate (DER), e.g. openssl x509 -noout -fingerprint -sha256 -in dev.pem")
		fs.String("secondary-thumbprint", "", "create --auth x509-thumbprint: a second certificate's thumbprint (for rolling certificates)")
		keyFlags(fs)
		updateFlags(fs)
	},
	runDevice,
)

// deviceFlags are the flags each subcommand of device takes.
var deviceFlags = map[string][]string{
	"create": {"edge", "parent", "primary-key", "secondary-key", "auth", "thumbprint", "secondary-thumbprint"},
	"update": {"primary-key", "secondary-key", "regenerate-keys", "status"},
}

func runDevice(ctx context.Context, h *hubCall) error {
	sub, args, err := h.sub(map[string]int{"create": 1, "update": 1, "list": 0, "show": 1, "connection-string": 1, "delete": 1})
	if err != nil {
		return err
	}
	if err := h.csFor(sub); err != nil {
		return err
	}
	// A flag of one subcommand is refused by the others.
	for _, name := range slices.Concat(deviceFlags["create"], deviceFlags["update"]) {
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
	if sub == "create" {
		if auth, err = h.authFlags(auth); err != nil {
			return err
		}
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
	case "show", "connection-string":
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
	cs := c.ConnectionString(d.JSON)
	if d.ConnectionString != nil {
		cs = *d.ConnectionString
	} else if cs != "" {
		var err error
		if out, err = withField(raw, "connectionString", cs); err != nil {
			return err
		}
	}
	if h.cs {
		if cs == "" {
			return fmt.Errorf("%s has no connection string: it has no primary key and no X.509 authentication", describe(d.JSON))
		}
		_, err := fmt.Fprintln(h.env.Stdout, cs)
		return err
	}
	return h.write(out)
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

// csFor checks -o against subcommand sub of device or module: -o cs
// applies to those that print one identity; connection-string is -o cs.
func (h *hubCall) csFor(sub string) error {
	switch {
	case sub == "connection-string":
		if h.isSet("o") && !h.cs {
			return cli.Usagef("%s connection-string prints the connection string alone; -o does not apply", h.fs.Name())
		}
		h.cs = true
	case h.cs && sub != "show" && sub != "create" && sub != "update":
		return cli.Usagef("-o cs: %s %s prints no single identity (show, create and update do)", h.fs.Name(), sub)
	}
	return nil
}

// describe names an identity in a message: device "d" or module "m" of device "d".
func describe(id identity.JSON) string {
	if id.ModuleID != "" {
		return fmt.Sprintf("module %q of device %q", id.ModuleID, id.DeviceID)
	}
	return fmt.Sprintf("device %q", id.DeviceID)
}

// authFlags returns the authentication that --auth and its flags ask for
// on device create; keys is what --primary-key and --secondary-key gave.
func (h *hubCall) authFlags(keys *identity.Authentication) (*identity.Authentication, error) {
	mode, tp, tp2 := h.str("auth"), h.str("thumbprint"), h.str("secondary-thumbprint")
	if mode != "x509-thumbprint" && (tp != "" || tp2 != "") {
		return nil, cli.Usagef("--thumbprint and --secondary-thumbprint need --auth x509-thumbprint")
	}
	if mode != "sas" && keys != nil {
		return nil, cli.Usagef("--primary-key and --secondary-key are for --auth sas, not %s", mode)
	}
	switch mode {
	case "sas":
		return keys, nil
	case "x509-ca":
		return &identity.Authentication{Type: identity.AuthCA}, nil
	case "x509-thumbprint":
		if tp == "" {
			return nil, cli.Usagef("--auth x509-thumbprint needs --thumbprint T: the hex SHA-1 or SHA-256 of the device's certificate")
		}
		for _, t := range []struct{ flag, v string }{{"thumbprint", tp}, {"secondary-thumbprint", tp2}} {
			if t.v != "" && !isThumbprint(t.v) {
				return nil, cli.Usagef("--%s %q: want the hex SHA-1 (40 digits) or SHA-256 (64 digits) of the certificate, ':' allowed", t.flag, short(t.v))
			}
		}
		return &identity.Authentication{Type: identity.AuthSelfSigned, X509Thumbprint: &identity.X509Thumbprint{PrimaryThumbprint: tp, SecondaryThumbprint: tp2}}, nil
	}
	return nil, cli.Usagef("--auth %q: want sas, x509-ca or x509-thumbprint", mode)
}

// isThumbprint reports whether s is 40 or 64 hex digits, ':' and spaces
// between them allowed (as openssl prints fingerprints).
func isThumbprint(s string) bool {
	n := 0
	for _, r := range s {
		switch {
		case r == ':' || r == ' ':
		case '0' <= r && r <= '9', 'a' <= r && r <= 'f', 'A' <= r && r <= 'F':
			n++
		default:
			return false
		}
	}
	return n == 40 || n == 64
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
