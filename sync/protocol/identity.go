package protocol

import (
	"slices"

	"github.com/outpost-edge/outpost/store/identity"
)

// Identity is a device or module identity as the link carries it to an
// edge (Push.Identities). It is the wire's own type, apart from the
// registry's record (store/identity.Identity), so that a change of the
// record cannot change the frame; IdentityFromStore and Store convert at
// the edges of the link. Its CBOR keys are pinned by TestGolden.
type Identity struct {
	DeviceID     string       `cbor:"1,keyasint,omitempty"`
	ModuleID     string       `cbor:"2,keyasint,omitempty"`
	Status       string       `cbor:"3,keyasint,omitempty"` // enabled|disabled
	Edge         bool         `cbor:"4,keyasint,omitempty"` // capabilities.iotEdge
	DeviceScope  string       `cbor:"5,keyasint,omitempty"` // edge devices: "ms-azure-iot-edge://<d>-<random>"
	ParentScopes []string     `cbor:"6,keyasint,omitempty"`
	Auth         IdentityAuth `cbor:"7,keyasint,omitempty"`
	Generation   string       `cbor:"8,keyasint,omitempty"` // IoT Hub's generationId
}

// IdentityAuth is how an identity proves itself: SAS keys or X.509
// thumbprints (hex SHA-1 or SHA-256 of the DER certificate).
type IdentityAuth struct {
	Type                string `cbor:"1,keyasint,omitempty"` // sas|selfSigned|certificateAuthority
	PrimaryKey          []byte `cbor:"2,keyasint,omitempty"`
	SecondaryKey        []byte `cbor:"3,keyasint,omitempty"`
	PrimaryThumbprint   string `cbor:"4,keyasint,omitempty"`
	SecondaryThumbprint string `cbor:"5,keyasint,omitempty"`
}

// ID is "d" for a device and "d/m" for a module.
func (id Identity) ID() string {
	if id.ModuleID == "" {
		return id.DeviceID
	}
	return id.DeviceID + "/" + id.ModuleID
}

// IdentityFromStore converts a registry record to its wire form; the
// result shares nothing with id.
func IdentityFromStore(id identity.Identity) Identity {
	a := id.Auth
	return Identity{
		DeviceID: id.DeviceID, ModuleID: id.ModuleID, Status: id.Status, Edge: id.Edge,
		DeviceScope: id.DeviceScope, ParentScopes: slices.Clone(id.ParentScopes), Generation: id.Generation,
		Auth: IdentityAuth{Type: a.Type, PrimaryKey: slices.Clone(a.PrimaryKey), SecondaryKey: slices.Clone(a.SecondaryKey),
			PrimaryThumbprint: a.PrimaryThumbprint, SecondaryThumbprint: a.SecondaryThumbprint},
	}
}

// Store converts the wire form to a registry record; the result shares
// nothing with id.
func (id Identity) Store() identity.Identity {
	a := id.Auth
	return identity.Identity{
		DeviceID: id.DeviceID, ModuleID: id.ModuleID, Status: id.Status, Edge: id.Edge,
		DeviceScope: id.DeviceScope, ParentScopes: slices.Clone(id.ParentScopes), Generation: id.Generation,
		Auth: identity.Auth{Type: a.Type, PrimaryKey: slices.Clone(a.PrimaryKey), SecondaryKey: slices.Clone(a.SecondaryKey),
			PrimaryThumbprint: a.PrimaryThumbprint, SecondaryThumbprint: a.SecondaryThumbprint},
	}
}

// IdentitiesFromStore converts registry records to their wire form (nil
// for none).
func IdentitiesFromStore(ids []identity.Identity) []Identity {
	if ids == nil {
		return nil
	}
	out := make([]Identity, len(ids))
	for i, id := range ids {
		out[i] = IdentityFromStore(id)
	}
	return out
}

// StoreIdentities converts wire identities to registry records (nil for
// none).
func StoreIdentities(ids []Identity) []identity.Identity {
	if ids == nil {
		return nil
	}
	out := make([]identity.Identity, len(ids))
	for i, id := range ids {
		out[i] = id.Store()
	}
	return out
}
