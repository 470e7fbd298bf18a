package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/identity/sas"
)

// System modules every edge device has, as on IoT Hub.
var systemModules = []string{"$edgeAgent", "$edgeHub"}

// PutDevice creates or updates a device from its REST shape. Keys are
// generated when absent (an update without keys keeps the old ones); an
// edge device gets a device scope and its $edgeAgent and $edgeHub modules.
func (h *Hub) PutDevice(ctx context.Context, j identity.JSON) (identity.Identity, error) {
	return h.PutDeviceIf(ctx, j, "")
}

// PutDeviceIf is PutDevice with an If-Match header: an etag other than
// the device's current one (or any etag but "*" for a device that does
// not exist) refuses the write with ErrPrecondition.
func (h *Hub) PutDeviceIf(ctx context.Context, j identity.JSON, ifMatch string) (identity.Identity, error) {
	if j.ModuleID != "" {
		return identity.Identity{}, fmt.Errorf("%w: PUT /devices/{id} takes a device; use /devices/{id}/modules/{m} for modules", ErrInvalid)
	}
	// One device write at a time checks the tree of edges against the
	// state it changes (a cluster's writes all run on the leader).
	h.registryMu.Lock()
	defer h.registryMu.Unlock()
	old, exists, err := h.ids().Get(j.DeviceID)
	if err != nil {
		return identity.Identity{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := checkIdentityETag(j.DeviceID, old, exists, ifMatch); err != nil {
		return identity.Identity{}, err
	}
	id, err := fill(j, old, exists)
	if err != nil {
		return identity.Identity{}, err
	}
	if id.Edge && id.DeviceScope == "" {
		id.DeviceScope = "ms-azure-iot-edge://" + id.DeviceID + "-" + randomHex(8)
	}
	if !id.Edge {
		id.DeviceScope = ""
	}
	all, _ := h.ids().List()
	if err := h.tree().checkDevice(id, old, exists, all); err != nil {
		return identity.Identity{}, err
	}
	cmd := putIdentities{IDs: []identity.Identity{id}}
	if id.Edge {
		for _, m := range systemModules {
			if _, ok, _ := h.ids().Get(id.DeviceID + "/" + m); !ok {
				cmd.IDs = append(cmd.IDs, newModule(id.DeviceID, m))
			}
		}
	}
	if err := h.apply(ctx, cmd); err != nil {
		return identity.Identity{}, err
	}
	return id, nil
}

// PutModule creates or updates a module identity of an existing device.
func (h *Hub) PutModule(ctx context.Context, j identity.JSON) (identity.Identity, error) {
	return h.PutModuleIf(ctx, j, "")
}

// PutModuleIf is PutModule with an If-Match header (see PutDeviceIf).
func (h *Hub) PutModuleIf(ctx context.Context, j identity.JSON, ifMatch string) (identity.Identity, error) {
	if _, ok, _ := h.ids().Get(j.DeviceID); !ok {
		return identity.Identity{}, fmt.Errorf("%w: device %q", ErrNotFound, j.DeviceID)
	}
	h.registryMu.Lock()
	defer h.registryMu.Unlock()
	old, exists, err := h.ids().Get(j.DeviceID + "/" + j.ModuleID)
	if err != nil {
		return identity.Identity{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := checkIdentityETag(j.DeviceID+"/"+j.ModuleID, old, exists, ifMatch); err != nil {
		return identity.Identity{}, err
	}
	j.Capabilities, j.DeviceScope, j.ParentScopes = nil, "", nil
	id, err := fill(j, old, exists)
	if err != nil {
		return identity.Identity{}, err
	}
	return id, h.apply(ctx, putIdentities{IDs: []identity.Identity{id}})
}

func newModule(device, module string) identity.Identity {
	return identity.Identity{DeviceID: device, ModuleID: module, Status: identity.Enabled, Generation: identity.NewGeneration(),
		Auth: identity.Auth{Type: identity.AuthSAS, PrimaryKey: sas.GenerateKey(), SecondaryKey: sas.GenerateKey()}}
}

// fill turns a REST body into an identity: defaults, generated or kept
// keys, validation.
func fill(j identity.JSON, old identity.Identity, exists bool) (identity.Identity, error) {
	if exists && j.Authentication == nil {
		j.Authentication = old.ToJSON().Authentication
	}
	if exists && j.DeviceScope == "" {
		j.DeviceScope = old.DeviceScope
	}
	if j.Authentication == nil || j.Authentication.Type == "" || j.Authentication.Type == identity.AuthSAS {
		if j.Authentication == nil {
			j.Authentication = &identity.Authentication{Type: identity.AuthSAS}
		}
		if j.Authentication.SymmetricKey == nil {
			j.Authentication.SymmetricKey = &identity.SymmetricKey{}
		}
		k := j.Authentication.SymmetricKey
		if len(k.PrimaryKey) == 0 {
			k.PrimaryKey = sas.GenerateKey()
		}
		if len(k.SecondaryKey) == 0 {
			k.SecondaryKey = sas.GenerateKey()
		}
	}
	j.GenerationID = "" // read-only: the hub's, not the caller's
	id, err := j.Identity()
	if err != nil {
		return identity.Identity{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	id.Generation = old.Generation
	if !exists || id.Generation == "" {
		id.Generation = identity.NewGeneration() // created (again): a new generation
	}
	return id, nil
}

// DeleteDevice removes a device and its modules.
func (h *Hub) DeleteDevice(ctx context.Context, device string) error {
	h.registryMu.Lock()
	defer h.registryMu.Unlock()
	self, ok, _ := h.ids().Get(device)
	if !ok {
		return fmt.Errorf("%w: device %q", ErrNotFound, device)
	}
	ids, _ := h.ids().List()
	if self.Edge && self.DeviceScope != "" {
		// Its child edges would keep a parent scope that names nothing,
		// which a later edge given that scope would adopt with their trees.
		var children []string
		for _, id := range ids {
			if id.Edge && id.ModuleID == "" && slices.Contains(id.ParentScopes, self.DeviceScope) {
				children = append(children, id.DeviceID)
			}
		}
		if len(children) > 0 {
			return fmt.Errorf("%w: edge %q has child edges (%s): delete them or give them another parent first",
				ErrInvalid, device, strings.Join(children, ", "))
		}
	}
	cmd := deleteIdentities{IDs: []string{device}}
	for _, id := range ids {
		if id.ModuleID != "" && id.DeviceID == device {
			cmd.IDs = append(cmd.IDs, id.ID())
		}
	}
	return h.apply(ctx, cmd)
}

// DeleteModule removes a module identity.
func (h *Hub) DeleteModule(ctx context.Context, device, module string) error {
	if _, ok, _ := h.ids().Get(device + "/" + module); !ok {
		return fmt.Errorf("%w: module %q of device %q", ErrNotFound, module, device)
	}
	return h.apply(ctx, deleteIdentities{IDs: []string{device + "/" + module}})
}

// Identity returns a device ("d") or module ("d/m").
func (h *Hub) Identity(id string) (identity.Identity, error) { return lookupIdentity(h.ids(), id) }

func (f *FSM) identity(id string) (identity.Identity, error) { return lookupIdentity(f.ids, id) }

func lookupIdentity(ids *identity.Cache, id string) (identity.Identity, error) {
	v, ok, err := ids.Get(id)
	switch {
	case err != nil:
		return v, fmt.Errorf("%w: %v", ErrInvalid, err)
	case !ok:
		return v, fmt.Errorf("%w: %q is not registered", ErrNotFound, id)
	}
	return v, nil
}

// Devices lists the devices (not their modules).
func (h *Hub) Devices() []identity.Identity {
	ids, _ := h.ids().List()
	return slices.DeleteFunc(ids, func(i identity.Identity) bool { return i.ModuleID != "" })
}

// Modules lists the module identities of a device.
func (h *Hub) Modules(device string) ([]identity.Identity, error) {
	if _, err := h.Identity(device); err != nil {
		return nil, err
	}
	ids, _ := h.ids().List()
	return slices.DeleteFunc(ids, func(i identity.Identity) bool { return i.ModuleID == "" || i.DeviceID != device }), nil
}

// scope returns the identities an edge serves: itself, its modules, its
// children and their modules, and, for each child edge, its scope.
func (h *Hub) scope(edge string) ([]identity.Identity, identity.Identity, error) {
	self, err := h.Identity(edge)
	if err != nil {
		return nil, self, err
	}
	if !self.Edge {
		return nil, self, fmt.Errorf("%w: %q is not an edge device", ErrInvalid, edge)
	}
	all, _ := h.ids().List()
	t := h.tree()
	return slices.DeleteFunc(all, func(i identity.Identity) bool { return !t.under(edge, i.ID()) }), self, nil
}

// inScope returns a check of whether an identity ("d" or "d/m") is in an
// edge's scope (see scope), by lookups rather than a scan of the registry:
// for the per-batch checks of the link.
func (h *Hub) inScope(edge string) (func(id string) bool, error) { return scopeOf(h.tree(), edge) }

// inScope (see Hub.inScope) reads only the FSM's state.
func (f *FSM) inScope(edge string) (func(id string) bool, error) { return scopeOf(f.tree(), edge) }

func scopeOf(t tree, edge string) (func(id string) bool, error) {
	self, err := lookupIdentity(t.ids, edge)
	if err != nil {
		return nil, err
	}
	if !self.Edge {
		return nil, fmt.Errorf("%w: %q is not an edge device", ErrInvalid, edge)
	}
	return func(id string) bool { return t.under(edge, id) }, nil
}

// edgeOf returns the edge device that serves id ("d" or "d/m"): d itself
// when it is an edge, else d's parent.
func (h *Hub) edgeOf(id string) (string, error) {
	if _, err := h.Identity(id); err != nil {
		return "", err
	}
	if e, ok := h.tree().owner(id); ok {
		return e, nil
	}
	return "", fmt.Errorf("%w: %q is not behind an edge; Outpost reaches devices through their edge", ErrOffline, id)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// checkIdentityETag checks an If-Match header against an identity: none
// or "*" matches anything; an etag matches only the current record.
func checkIdentityETag(id string, old identity.Identity, exists bool, ifMatch string) error {
	tag := strings.Trim(strings.TrimSpace(ifMatch), `"`)
	if tag == "" || tag == "*" {
		return nil
	}
	if !exists {
		return fmt.Errorf("%w: %q does not exist, so no etag matches it (create it without If-Match)", ErrPrecondition, id)
	}
	if now := identityETag(old); now != tag {
		return fmt.Errorf("%w: %q has etag %q, not %q: read it again and retry", ErrPrecondition, id, now, tag)
	}
	return nil
}
