package identity

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/store/kv"
)

// Status values.
const (
	Enabled  = "enabled"
	Disabled = "disabled"
)

// Auth types, as IoT Hub names them.
const (
	AuthSAS        = "sas"
	AuthSelfSigned = "selfSigned"
	AuthCA         = "certificateAuthority"
)

// Identity is one device or module identity as the hub's registry knows it.
type Identity struct {
	DeviceID     string   `cbor:"1,keyasint,omitempty"`
	ModuleID     string   `cbor:"2,keyasint,omitempty"`
	Status       string   `cbor:"3,keyasint,omitempty"` // enabled|disabled
	Edge         bool     `cbor:"4,keyasint,omitempty"` // capabilities.iotEdge
	DeviceScope  string   `cbor:"5,keyasint,omitempty"` // edge devices: "ms-azure-iot-edge://<d>-<random>"
	ParentScopes []string `cbor:"6,keyasint,omitempty"`
	Auth         Auth     `cbor:"7,keyasint,omitempty"`
	// Generation is IoT Hub's generationId: set by the hub when the
	// identity is created, new when it is created again after a delete.
	// What the old identity left (its twin, its queued messages) is told
	// apart by it.
	Generation string `cbor:"8,keyasint,omitempty"`
}

// Auth is how an identity proves itself.
type Auth struct {
	Type                string `cbor:"1,keyasint,omitempty"` // sas|selfSigned|certificateAuthority
	PrimaryKey          []byte `cbor:"2,keyasint,omitempty"`
	SecondaryKey        []byte `cbor:"3,keyasint,omitempty"`
	PrimaryThumbprint   string `cbor:"4,keyasint,omitempty"` // hex SHA-1 or SHA-256 of the DER certificate
	SecondaryThumbprint string `cbor:"5,keyasint,omitempty"`
}

// ID is "d" for a device and "d/m" for a module: the MQTT client id.
func (id Identity) ID() string {
	if id.ModuleID == "" {
		return id.DeviceID
	}
	return id.DeviceID + "/" + id.ModuleID
}

// SplitID splits "d" or "d/m" and validates both ids.
func SplitID(id string) (deviceID, moduleID string, err error) {
	deviceID, moduleID, isModule := strings.Cut(id, "/")
	if err := sas.CheckID("device id", deviceID); err != nil {
		return "", "", fmt.Errorf("%w: id %q: %v", ErrInvalid, short(id), err)
	}
	if isModule {
		if err := sas.CheckID("module id", moduleID); err != nil {
			return "", "", fmt.Errorf("%w: id %q: %v", ErrInvalid, short(id), err)
		}
	}
	return deviceID, moduleID, nil
}

// Validate checks what the cache stores and Authenticate relies on.
func (id Identity) Validate() error {
	if err := sas.CheckID("device id", id.DeviceID); err != nil {
		return invalid(id, "%v", err)
	}
	if id.ModuleID != "" {
		if err := sas.CheckID("module id", id.ModuleID); err != nil {
			return invalid(id, "%v", err)
		}
		if id.Edge || id.DeviceScope != "" || len(id.ParentScopes) > 0 {
			return invalid(id, "a module has no iotEdge capability, device scope or parent scopes")
		}
	}
	if id.Status != Enabled && id.Status != Disabled {
		return invalid(id, "status %q, want enabled or disabled", short(id.Status))
	}
	if len(id.ParentScopes) > 1 || slices.Contains(id.ParentScopes, "") {
		return invalid(id, "want at most one non-empty parent scope (a device has one parent)")
	}
	if len(id.Generation) > 64 || strings.ContainsFunc(id.Generation, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return invalid(id, "generationId %q: at most 64 printable ASCII characters", short(id.Generation))
	}
	return id.Auth.validate(id)
}

func (a Auth) validate(id Identity) error {
	switch a.Type {
	case AuthSAS:
		if len(a.PrimaryKey) == 0 && len(a.SecondaryKey) == 0 {
			return invalid(id, "sas authentication without a key")
		}
	case AuthSelfSigned:
		if a.PrimaryThumbprint == "" && a.SecondaryThumbprint == "" {
			return invalid(id, "selfSigned authentication without a thumbprint")
		}
		for _, tp := range []string{a.PrimaryThumbprint, a.SecondaryThumbprint} {
			if n := len(normThumbprint(tp)); tp != "" && n != 40 && n != 64 {
				return invalid(id, "thumbprint is not hex SHA-1 (40 digits) or SHA-256 (64 digits)")
			}
		}
	case AuthCA:
	default:
		return invalid(id, "authentication type %q, want sas, selfSigned or certificateAuthority", short(a.Type))
	}
	return nil
}

// normThumbprint upper-cases a hex thumbprint and drops ':' and spaces, so
// "ab:cd" and "ABCD" compare equal; anything not hex comes back "".
func normThumbprint(tp string) string {
	var b strings.Builder
	for _, c := range strings.ToUpper(tp) {
		switch {
		case c == ':' || c == ' ':
		case '0' <= c && c <= '9' || 'A' <= c && c <= 'F':
			b.WriteRune(c)
		default:
			return ""
		}
	}
	return b.String()
}

func (id Identity) clone() Identity {
	id.ParentScopes = slices.Clone(id.ParentScopes)
	id.Auth.PrimaryKey = slices.Clone(id.Auth.PrimaryKey)
	id.Auth.SecondaryKey = slices.Clone(id.Auth.SecondaryKey)
	return id
}

// encode and decodeIdentity are the stored record format.
func (id Identity) encode() ([]byte, error) { return kv.Marshal(&id) }

func decodeIdentity(b []byte) (Identity, error) {
	var id Identity
	if err := kv.Unmarshal(b, &id); err != nil {
		return Identity{}, err
	}
	if err := id.Validate(); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// Errors. Messages say what is wrong and what to do; none contains a key or
// a token.
var (
	ErrInvalid          = errors.New("invalid identity")
	ErrUnknownIdentity  = errors.New("identity not known to this edge")
	ErrDisabled         = errors.New("identity is disabled")
	ErrNotChild         = errors.New("identity is not in this edge's scope")
	ErrClientIDMismatch = errors.New("MQTT client id does not match the identity")
	ErrBadCredentials   = errors.New("bad credentials")
	// ErrCredentialsChanged ends a session whose identity's credentials
	// changed after it connected (Cache.Recheck).
	ErrCredentialsChanged = errors.New("credentials changed")
)

func invalid(id Identity, format string, args ...any) error {
	return fmt.Errorf("%w %q: %s", ErrInvalid, short(id.ID()), fmt.Sprintf(format, args...))
}

func short(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// NewGeneration returns a fresh generationId (decimal, as IoT Hub's).
func NewGeneration() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return strconv.FormatUint(binary.BigEndian.Uint64(b[:])>>1, 10)
}
