package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/twin"
)

// writeTwin patches (or, with Replace, replaces) a twin's tags and desired
// properties.
type writeTwin struct {
	ID      string          `cbor:"1,keyasint"`
	Tags    json.RawMessage `cbor:"2,keyasint,omitempty"`
	Desired json.RawMessage `cbor:"3,keyasint,omitempty"`
	Replace bool            `cbor:"4,keyasint,omitempty"`
	// IfMatch, when not 0, is the twin version the write was made
	// against (If-Match): any other current version refuses it (412).
	IfMatch int64 `cbor:"5,keyasint,omitempty"`
}

// applyConfiguration sets the desired properties of an edge's module
// twins and creates the module identities they need.
type applyConfiguration struct {
	Device  string                     `cbor:"1,keyasint"`
	Desired map[string]json.RawMessage `cbor:"2,keyasint"` // module → properties.desired
	New     []identity.Identity        `cbor:"3,keyasint,omitempty"`
	// AtScale: the deployer's (configurations.go), which records Configs
	// (the deployments it comes from, "id@version") as what the edge got;
	// without Desired it only records that none targets the edge now.
	AtScale bool     `cbor:"4,keyasint,omitempty"`
	Configs []string `cbor:"5,keyasint,omitempty"`
}

// Twin returns the service view of a twin ("d" or "d/m"): the IoT Hub
// twin document with its etag and version.
func (h *Hub) Twin(id string) ([]byte, error) {
	doc, err := h.TwinDoc(id)
	if err != nil {
		return nil, err
	}
	return json.Marshal(doc)
}

// TwinDoc is Twin before encoding.
func (h *Hub) TwinDoc(id string) (map[string]any, error) {
	ident, err := h.Identity(id)
	if err != nil {
		return nil, err
	}
	v, err := h.twins().Get(id)
	if errors.Is(err, twin.ErrNotFound) {
		return nil, fmt.Errorf("%w: twin %q", ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	return h.twinDoc(ident, v), nil
}

// UpdateTwin applies a service PATCH (replace false) or PUT of
// {"tags":…,"properties":{"desired":…}}; properties.reported is the
// device's and refused.
func (h *Hub) UpdateTwin(ctx context.Context, id string, body []byte, replace bool) ([]byte, error) {
	return h.UpdateTwinIf(ctx, id, body, replace, 0)
}

// UpdateTwinIf is UpdateTwin made against the twin version ifMatch (its
// If-Match etag), when not 0: another current version refuses the write
// with ErrPrecondition.
func (h *Hub) UpdateTwinIf(ctx context.Context, id string, body []byte, replace bool, ifMatch int64) ([]byte, error) {
	if _, err := h.Identity(id); err != nil {
		return nil, err
	}
	var doc struct {
		Tags       json.RawMessage `json:"tags"`
		Properties *struct {
			Desired  json.RawMessage `json:"desired"`
			Reported json.RawMessage `json:"reported"`
		} `json:"properties"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: twin body must be a JSON object like {\"tags\":{…},\"properties\":{\"desired\":{…}}}: %v", ErrInvalid, err)
	}
	c := writeTwin{ID: id, Tags: doc.Tags, Replace: replace, IfMatch: ifMatch}
	if p := doc.Properties; p != nil {
		if len(p.Reported) > 0 && !bytes.Equal(p.Reported, []byte("null")) {
			return nil, fmt.Errorf("%w: properties.reported is written by the device, not through the service API", ErrInvalid)
		}
		c.Desired = p.Desired
	}
	if replace {
		for _, f := range []*json.RawMessage{&c.Tags, &c.Desired} {
			if len(*f) == 0 || bytes.Equal(*f, []byte("null")) {
				*f = json.RawMessage("{}")
			}
		}
	}
	if err := h.apply(ctx, c); err != nil {
		return nil, err
	}
	return h.Twin(id)
}

func (f *FSM) writeTwinLocked(ctx context.Context, c writeTwin) error {
	if c.IfMatch != 0 {
		v, err := f.twins.Get(c.ID)
		if err != nil {
			return fmt.Errorf("%w: twin %q: %v", ErrNotFound, c.ID, err)
		}
		if now := v.Version(); now != c.IfMatch {
			return fmt.Errorf("%w: twin %q is at version %d (etag %s), the write was made against version %d: read it again and retry",
				ErrPrecondition, c.ID, now, twinETag(now), c.IfMatch)
		}
	}
	for _, w := range []struct {
		doc            json.RawMessage
		patch, replace func(context.Context, string, []byte) (int64, error)
	}{{c.Tags, f.twins.PatchTags, f.twins.ReplaceTags}, {c.Desired, f.twins.PatchDesired, f.twins.ReplaceDesired}} {
		if len(w.doc) == 0 || bytes.Equal(w.doc, []byte("null")) {
			continue
		}
		write := w.patch
		if c.Replace {
			write = w.replace
		}
		if _, err := write(ctx, c.ID, w.doc); err != nil {
			if errors.Is(err, twin.ErrInvalid) || errors.Is(err, twin.ErrTooLarge) {
				return fmt.Errorf("%w: %v", ErrInvalid, err)
			}
			return err
		}
	}
	return nil
}

// ApplyConfiguration is POST /devices/{d}/applyConfigurationContent: each
// module's properties.desired replaces its twin's desired properties
// ($edgeAgent's carries the modules, $edgeHub's the routes), and every
// module named by the deployment gets an identity.
func (h *Hub) ApplyConfiguration(ctx context.Context, device string, body []byte) ([]string, error) {
	d, err := h.Identity(device)
	if err != nil {
		return nil, err
	}
	if !d.Edge {
		return nil, fmt.Errorf("%w: %q is not an edge device (create it with capabilities.iotEdge)", ErrInvalid, device)
	}
	var m struct {
		ModulesContent map[string]map[string]json.RawMessage `json:"modulesContent"`
	}
	if err := json.Unmarshal(body, &m); err != nil || len(m.ModulesContent) == 0 {
		return nil, fmt.Errorf("%w: want {\"modulesContent\":{\"$edgeAgent\":{\"properties.desired\":…},…}}", ErrInvalid)
	}
	desired := map[string]json.RawMessage{}
	for mod, content := range m.ModulesContent {
		d, ok := content["properties.desired"]
		if !ok || len(content) != 1 {
			return nil, fmt.Errorf("%w: modulesContent.%s must be {\"properties.desired\":{…}}", ErrInvalid, mod)
		}
		desired[mod] = d
	}
	c, err := h.configurationCommand(device, desired)
	if err != nil {
		return nil, err
	}
	var out []string
	for mod := range c.Desired {
		out = append(out, mod)
	}
	for _, id := range c.New {
		if _, ok := c.Desired[id.ModuleID]; !ok {
			out = append(out, id.ModuleID)
		}
	}
	sort.Strings(out)
	return out, h.apply(ctx, c)
}

// configurationCommand makes the command that deploys desired (module →
// properties.desired) to an edge, with identities for the modules it
// names that have none yet.
func (h *Hub) configurationCommand(device string, desired map[string]json.RawMessage) (applyConfiguration, error) {
	c := applyConfiguration{Device: device, Desired: desired}
	names := map[string]bool{}
	for mod := range desired {
		names[mod] = true
	}
	var agent struct {
		Modules map[string]json.RawMessage `json:"modules"`
	}
	if a, ok := c.Desired["$edgeAgent"]; ok {
		if err := json.Unmarshal(a, &agent); err != nil {
			return c, fmt.Errorf("%w: $edgeAgent properties.desired: %v", ErrInvalid, err)
		}
	}
	for mod := range agent.Modules {
		names[mod] = true
	}
	mods := make([]string, 0, len(names))
	for mod := range names {
		mods = append(mods, mod)
	}
	sort.Strings(mods)
	for _, mod := range mods {
		if _, _, err := identity.SplitID(device + "/" + mod); err != nil {
			return c, fmt.Errorf("%w: module name %q: %v", ErrInvalid, mod, err)
		}
		if _, ok, _ := h.ids().Get(device + "/" + mod); !ok {
			c.New = append(c.New, newModule(device, mod))
		}
	}
	return c, nil
}

func (f *FSM) applyConfigurationLocked(ctx context.Context, c applyConfiguration) error {
	if c.AtScale {
		if err := f.recordApplied(ctx, c.Device, c.Configs); err != nil {
			return err
		}
	}
	if len(c.New) > 0 {
		if err := f.putIdentitiesLocked(ctx, putIdentities{IDs: c.New}); err != nil {
			return err
		}
	}
	mods := make([]string, 0, len(c.Desired))
	for m := range c.Desired {
		mods = append(mods, m)
	}
	sort.Strings(mods)
	for _, m := range mods {
		if err := f.writeTwinLocked(ctx, writeTwin{ID: c.Device + "/" + m, Desired: c.Desired[m], Replace: true}); err != nil {
			return fmt.Errorf("module %s: %w", m, err)
		}
	}
	return nil
}

// TwinStore is the hub's twin replica (tests and diagnostics read its
// counters, version vector and tombstones; writes go through the hub).
func (h *Hub) TwinStore() *twin.Store { return h.twins() }

// recordApplied keeps which deployments an edge got (none: forgotten).
func (f *FSM) recordApplied(ctx context.Context, edge string, configs []string) error {
	if len(configs) == 0 {
		return f.db.Commit(ctx, kv.Del(deployedKey(edge)))
	}
	v, err := kv.Marshal(configs)
	if err != nil {
		return err
	}
	return f.db.Commit(ctx, kv.Set(deployedKey(edge), v))
}
