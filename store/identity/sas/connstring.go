package sas

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// ConnString is an Azure IoT Hub connection string: a device's or module's
// (DeviceId, optionally ModuleId, a key or x509=true) or a hub policy's
// (SharedAccessKeyName and its key).
type ConnString struct {
	HostName            string
	DeviceID            string
	ModuleID            string
	SharedAccessKeyName string
	SharedAccessKey     []byte // decoded; never printed except by String
	GatewayHostName     string
	X509                bool
}

// ErrConnString is wrapped by every connection string parse error.
var ErrConnString = errors.New("invalid connection string")

// Limits of the parts of a connection string.
const (
	maxConnString = 4096
	maxHostName   = 255
	maxIDLen      = 128 // IoT Hub device and module ids
	maxKeyBytes   = 512 // IoT Hub keys are 16 to 64 bytes
)

// ParseConnString parses `Key=value;Key=value…`. Keys are case-sensitive as in
// Azure; a value may itself contain '=' (base64). Empty segments (a trailing
// ';') are ignored and surrounding whitespace is trimmed. Errors name the part
// that is wrong and never contain the key.
func ParseConnString(s string) (ConnString, error) {
	var cs ConnString
	s = strings.TrimSpace(s)
	if s == "" {
		return cs, connErr("it is empty; want HostName=…;DeviceId=…;SharedAccessKey=…")
	}
	if len(s) > maxConnString {
		return cs, connErr("it is longer than %d bytes", maxConnString)
	}
	seen := map[string]bool{}
	var key string
	for i, seg := range strings.Split(s, ";") {
		if seg == "" {
			continue
		}
		k, v, ok := strings.Cut(seg, "=")
		if !ok {
			return cs, connErr("part %d has no '=' (want Key=value)", i+1)
		}
		if seen[k] {
			return cs, connErr("%s appears twice", short(k))
		}
		seen[k] = true
		if v == "" {
			return cs, connErr("%s is empty", short(k))
		}
		if err := cs.set(k, v, &key); err != nil {
			return ConnString{}, err
		}
	}
	if key != "" {
		b, err := decodeKey(key)
		if err != nil {
			return ConnString{}, err
		}
		cs.SharedAccessKey = b
	}
	if err := cs.check(); err != nil {
		return ConnString{}, err
	}
	return cs, nil
}

func (cs *ConnString) set(k, v string, key *string) error {
	switch k {
	case "HostName":
		cs.HostName = v
	case "DeviceId":
		cs.DeviceID = v
	case "ModuleId":
		cs.ModuleID = v
	case "SharedAccessKeyName":
		cs.SharedAccessKeyName = v
	case "SharedAccessKey":
		*key = v
	case "GatewayHostName":
		cs.GatewayHostName = v
	case "x509":
		switch strings.ToLower(v) {
		case "true":
			cs.X509 = true
		case "false":
		default:
			return connErr("x509 is %q; want true or false", short(v))
		}
	case "SharedAccessSignature":
		return connErr("SharedAccessSignature connection strings are not supported; use one with SharedAccessKey")
	default:
		return unknownKey(k)
	}
	return nil
}

var knownKeys = []string{"HostName", "DeviceId", "ModuleId", "SharedAccessKeyName", "SharedAccessKey", "GatewayHostName", "x509"}

// unknownKey names the key only when it cannot be a pasted secret: a known
// key in the wrong case, or a short name (base64 keys are 22+ characters).
func unknownKey(k string) error {
	for _, known := range knownKeys {
		if strings.EqualFold(k, known) {
			return connErr("unknown key %q; keys are case-sensitive: did you mean %s?", k, known)
		}
	}
	const known = "known: HostName, DeviceId, ModuleId, SharedAccessKeyName, SharedAccessKey, GatewayHostName, x509"
	if len(k) <= 20 {
		return connErr("unknown key %q (%s)", k, known)
	}
	return connErr("a part has an unknown key (%s)", known)
}

func decodeKey(v string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		// Some tools drop the padding; accept that too.
		if b, err = base64.RawStdEncoding.DecodeString(v); err != nil {
			return nil, connErr("SharedAccessKey is not valid base64")
		}
	}
	if len(b) == 0 || len(b) > maxKeyBytes {
		return nil, connErr("SharedAccessKey decodes to %d bytes; want 1 to %d", len(b), maxKeyBytes)
	}
	return b, nil
}

// check enforces which combinations of parts make an identity.
func (cs *ConnString) check() error {
	if cs.HostName == "" {
		return connErr("HostName is missing")
	}
	if err := checkHost("HostName", cs.HostName); err != nil {
		return err
	}
	if cs.GatewayHostName != "" {
		if err := checkHost("GatewayHostName", cs.GatewayHostName); err != nil {
			return err
		}
	}
	switch {
	case cs.DeviceID != "" && cs.SharedAccessKeyName != "":
		return connErr("it has both DeviceId and SharedAccessKeyName; a connection string is either a device's or a hub policy's")
	case cs.DeviceID == "" && cs.SharedAccessKeyName == "":
		return connErr("it needs DeviceId (device or module) or SharedAccessKeyName (hub policy)")
	case cs.ModuleID != "" && cs.DeviceID == "":
		return connErr("ModuleId needs a DeviceId")
	}
	if cs.SharedAccessKeyName != "" {
		if err := CheckID("SharedAccessKeyName", cs.SharedAccessKeyName); err != nil {
			return connErr("%v", err)
		}
		if cs.X509 || cs.GatewayHostName != "" {
			return connErr("a hub policy (SharedAccessKeyName) takes no x509 or GatewayHostName")
		}
	} else {
		if err := CheckID("DeviceId", cs.DeviceID); err != nil {
			return connErr("%v", err)
		}
		if cs.ModuleID != "" {
			if err := CheckID("ModuleId", cs.ModuleID); err != nil {
				return connErr("%v", err)
			}
		}
	}
	switch {
	case cs.X509 && cs.SharedAccessKey != nil:
		return connErr("it has both x509=true and SharedAccessKey; use one")
	case !cs.X509 && cs.SharedAccessKey == nil:
		return connErr("SharedAccessKey is missing (or set x509=true for certificate authentication)")
	}
	return nil
}

// String formats the connection string so that ParseConnString returns cs
// again. It contains the key: use Redacted for anything a person or a log
// may see.
func (cs ConnString) String() string {
	return cs.format(base64.StdEncoding.EncodeToString(cs.SharedAccessKey))
}

// Redacted is String with the key replaced by "<redacted>".
func (cs ConnString) Redacted() string { return cs.format("<redacted>") }

// LogValue keeps keys out of slog output.
func (cs ConnString) LogValue() slog.Value { return slog.StringValue(cs.Redacted()) }

func (cs ConnString) format(key string) string {
	var b strings.Builder
	add := func(k, v string) {
		if v == "" {
			return
		}
		if b.Len() > 0 {
			b.WriteByte(';')
		}
		b.WriteString(k + "=" + v)
	}
	add("HostName", cs.HostName)
	add("DeviceId", cs.DeviceID)
	add("ModuleId", cs.ModuleID)
	add("SharedAccessKeyName", cs.SharedAccessKeyName)
	if len(cs.SharedAccessKey) > 0 {
		add("SharedAccessKey", key)
	}
	add("GatewayHostName", cs.GatewayHostName)
	if cs.X509 {
		add("x509", "true")
	}
	return b.String()
}

// Resource is the SAS resource URI of the identity: `<host>/devices/<d>`,
// `<host>/devices/<d>/modules/<m>`, or `<host>` for a hub policy.
func (cs ConnString) Resource() string {
	return ResourceURI(cs.HostName, cs.DeviceID, cs.ModuleID)
}

// ResourceURI builds `<host>[/devices/<d>[/modules/<m>]]`. Ids are written as
// they are (they are already restricted to URL-safe-ish characters); Verify
// also accepts resources whose ids were URL-encoded, as the C# SDK does.
func ResourceURI(host, deviceID, moduleID string) string {
	if deviceID == "" {
		return host
	}
	r := host + "/devices/" + deviceID
	if moduleID != "" {
		r += "/modules/" + moduleID
	}
	return r
}

// CheckID validates a device or module id (or policy name): IoT Hub's rules,
// 1 to 128 ASCII letters, digits and - . % _ * ? ! ( ) , : = @ $ ', except
// that '+' and '#', which IoT Hub allows, are refused: they are MQTT
// wildcards and cannot appear in a topic name, so an id holding one could
// not use its own topics and would widen every grant written for it. It is
// the one check of ids: the hub's registry, the CLI, the edge's identity
// cache and CONNECT all use it. what names the field in the error.
func CheckID(what, id string) error {
	if id == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if len(id) > maxIDLen {
		return fmt.Errorf("%s is longer than %d characters", what, maxIDLen)
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c == '+' || c == '#':
			return fmt.Errorf("%s %q has %q at byte %d: '+' and '#' are MQTT wildcards and not allowed in ids (IoT Hub allows them, Outpost does not); %s", what, short(id), rune(c), i, idCharset)
		case !idChar(c):
			return fmt.Errorf("%s %q has %q at byte %d; %s", what, short(id), rune(c), i, idCharset)
		}
	}
	return nil
}

// idCharset says what an id may hold, for error messages.
const idCharset = "ids use up to 128 ASCII letters, digits and - . % _ * ? ! ( ) , : = @ $ '"

func idChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("-.%_*?!(),:=@$'", c) >= 0
}

// checkHost accepts a DNS name or IP with an optional port ([v6]:port too).
func checkHost(what, h string) error {
	if len(h) > maxHostName {
		return connErr("%s is longer than %d characters", what, maxHostName)
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(".-_:[]", c) >= 0
		if !ok {
			return connErr("%s %q has %q; want a host name or address with an optional :port", what, short(h), rune(c))
		}
	}
	return nil
}

func connErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConnString, fmt.Sprintf(format, args...))
}

// short bounds what an error message quotes from its input.
func short(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
