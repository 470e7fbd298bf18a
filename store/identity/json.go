package identity

import (
	"encoding/json"
	"fmt"
)

// JSON is an identity in the IoT Hub REST shape (the hub's `PUT /devices/{d}`
// and `GET /devices/{d}/modules/{m}` bodies); it is also the format of the
// edge's `--identities` file, an array of these.
type JSON struct {
	DeviceID       string          `json:"deviceId"`
	ModuleID       string          `json:"moduleId,omitempty"`
	Status         string          `json:"status,omitempty"`
	Capabilities   *Capabilities   `json:"capabilities,omitempty"`
	DeviceScope    string          `json:"deviceScope,omitempty"`
	ParentScopes   []string        `json:"parentScopes,omitempty"`
	Authentication *Authentication `json:"authentication,omitempty"`
	GenerationID   string          `json:"generationId,omitempty"` // read-only at the hub
}

// Capabilities of a device.
type Capabilities struct {
	IoTEdge bool `json:"iotEdge"`
}

// Authentication as IoT Hub shows it.
type Authentication struct {
	Type           string          `json:"type"`
	SymmetricKey   *SymmetricKey   `json:"symmetricKey,omitempty"`
	X509Thumbprint *X509Thumbprint `json:"x509Thumbprint,omitempty"`
}

// SymmetricKey holds base64 keys (encoding/json encodes []byte as base64).
type SymmetricKey struct {
	PrimaryKey   []byte `json:"primaryKey,omitempty"`
	SecondaryKey []byte `json:"secondaryKey,omitempty"`
}

// X509Thumbprint holds certificate thumbprints.
type X509Thumbprint struct {
	PrimaryThumbprint   string `json:"primaryThumbprint,omitempty"`
	SecondaryThumbprint string `json:"secondaryThumbprint,omitempty"`
}

// ToJSON returns the REST shape of id.
func (id Identity) ToJSON() JSON {
	j := JSON{DeviceID: id.DeviceID, ModuleID: id.ModuleID, Status: id.Status, DeviceScope: id.DeviceScope, ParentScopes: id.ParentScopes, GenerationID: id.Generation}
	if id.ModuleID == "" {
		j.Capabilities = &Capabilities{IoTEdge: id.Edge}
	}
	a := &Authentication{Type: id.Auth.Type}
	if len(id.Auth.PrimaryKey) > 0 || len(id.Auth.SecondaryKey) > 0 {
		a.SymmetricKey = &SymmetricKey{PrimaryKey: id.Auth.PrimaryKey, SecondaryKey: id.Auth.SecondaryKey}
	}
	if id.Auth.PrimaryThumbprint != "" || id.Auth.SecondaryThumbprint != "" {
		a.X509Thumbprint = &X509Thumbprint{id.Auth.PrimaryThumbprint, id.Auth.SecondaryThumbprint}
	}
	j.Authentication = a
	return j
}

// Identity converts the REST shape, defaulting status to enabled and the
// authentication type to sas, and validates the result.
func (j JSON) Identity() (Identity, error) {
	id := Identity{DeviceID: j.DeviceID, ModuleID: j.ModuleID, Status: j.Status, DeviceScope: j.DeviceScope, ParentScopes: j.ParentScopes, Generation: j.GenerationID}
	if id.Status == "" {
		id.Status = Enabled
	}
	if j.Capabilities != nil {
		id.Edge = j.Capabilities.IoTEdge
	}
	id.Auth.Type = AuthSAS
	if a := j.Authentication; a != nil {
		if a.Type != "" {
			id.Auth.Type = a.Type
		}
		if k := a.SymmetricKey; k != nil {
			id.Auth.PrimaryKey, id.Auth.SecondaryKey = k.PrimaryKey, k.SecondaryKey
		}
		if t := a.X509Thumbprint; t != nil {
			id.Auth.PrimaryThumbprint, id.Auth.SecondaryThumbprint = t.PrimaryThumbprint, t.SecondaryThumbprint
		}
	}
	if err := id.Validate(); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// ParseJSONList reads an array of identities in the REST shape.
func ParseJSONList(data []byte) ([]Identity, error) {
	var list []JSON
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("%w: identities must be a JSON array of IoT Hub device/module objects: %v", ErrInvalid, err)
	}
	out := make([]Identity, 0, len(list))
	for i, j := range list {
		id, err := j.Identity()
		if err != nil {
			return nil, fmt.Errorf("identity %d (%q): %w", i, j.DeviceID, err)
		}
		out = append(out, id)
	}
	return out, nil
}
