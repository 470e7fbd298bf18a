package hub

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/twin"
)

// The service API's documents as IoT Hub shows them: identities and twins
// with their etags, versions and connection state. An etag is opaque to a
// client; the hub writes a twin's as base64 of its version (8 bytes, big
// endian, as IoT Hub does) and an identity's as a digest of its record.

// neverTime is how IoT Hub writes a time that never happened.
const neverTime = "0001-01-01T00:00:00Z"

// DeviceJSON is a device or module identity in the service API.
type DeviceJSON struct {
	identity.JSON
	ETag                       string `json:"etag"`
	ConnectionState            string `json:"connectionState"`
	ConnectionStateUpdatedTime string `json:"connectionStateUpdatedTime"`
	LastActivityTime           string `json:"lastActivityTime"`
	StatusUpdatedTime          string `json:"statusUpdatedTime"`
	CloudToDeviceMessageCount  int    `json:"cloudToDeviceMessageCount"`
}

// Presence is an identity's connection state as its edge last reported it.
type Presence struct {
	Connected bool
	Since     int64 // unix ms the state began (0: never reported)
	Activity  int64 // unix ms of its last activity (0: none)
}

func (p Presence) state() string {
	if p.Connected {
		return "Connected"
	}
	return "Disconnected"
}

func isoMillis(ms int64) string {
	if ms <= 0 {
		return neverTime
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}

// deviceJSON renders an identity for the service API.
func (h *Hub) deviceJSON(id identity.Identity) DeviceJSON {
	p := h.presence(id.ID())
	return DeviceJSON{
		JSON: id.ToJSON(), ETag: identityETag(id),
		ConnectionState: p.state(), ConnectionStateUpdatedTime: isoMillis(p.Since), LastActivityTime: isoMillis(p.Activity),
		StatusUpdatedTime: neverTime,
	}
}

// identityETag is a digest of the identity's record: it changes with any
// field of it, keys included.
func identityETag(id identity.Identity) string {
	b, _ := kv.Marshal(id)
	sum := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(sum[:9])
}

// twinETag is IoT Hub's form of a twin's etag: base64 of its version.
func twinETag(version int64) string {
	return base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint64(nil, uint64(version)))
}

// parseIfMatch reads an If-Match header for a twin: 0 for none or "*"
// (any version), else the version its etag names. Quotes are optional
// (the SDKs send both forms).
func parseIfMatch(h string) (int64, error) {
	h = strings.TrimSpace(h)
	h = strings.TrimPrefix(h, "W/")
	h = strings.Trim(h, `"`)
	if h == "" || h == "*" {
		return 0, nil
	}
	b, err := base64.StdEncoding.DecodeString(h)
	if err != nil || len(b) != 8 || binary.BigEndian.Uint64(b) == 0 || binary.BigEndian.Uint64(b) > 1<<62 {
		return 0, fmt.Errorf("%w: If-Match %q is not an etag of a twin (use the etag GET returns, or *)", ErrPrecondition, h)
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// twinDoc is a twin as the service API shows it: the registry's fields
// of its identity, its etag and version, tags and properties.
func (h *Hub) twinDoc(id identity.Identity, v *twin.View) map[string]any {
	doc := v.ServiceDoc()
	version := v.Version()
	p := h.presence(id.ID())
	doc["etag"] = twinETag(version)
	doc["deviceEtag"] = identityETag(id)
	doc["version"] = version
	doc["status"] = id.Status
	doc["statusUpdateTime"] = neverTime
	doc["connectionState"] = p.state()
	doc["lastActivityTime"] = isoMillis(p.Activity)
	doc["cloudToDeviceMessageCount"] = 0
	doc["authenticationType"] = id.Auth.Type
	doc["x509Thumbprint"] = map[string]any{"primaryThumbprint": nilIfEmpty(id.Auth.PrimaryThumbprint), "secondaryThumbprint": nilIfEmpty(id.Auth.SecondaryThumbprint)}
	doc["modelId"] = ""
	if id.ModuleID == "" {
		doc["capabilities"] = map[string]any{"iotEdge": id.Edge}
		if id.DeviceScope != "" {
			doc["deviceScope"] = id.DeviceScope
		}
		scopes := id.ParentScopes
		if scopes == nil {
			scopes = []string{}
		}
		doc["parentScopes"] = scopes
	}
	return doc
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// deviceStatistics is GET /statistics/devices.
func (h *Hub) deviceStatistics(w http.ResponseWriter, _ *http.Request) error {
	var total, enabled int
	for _, id := range h.Devices() {
		total++
		if id.Status == identity.Enabled {
			enabled++
		}
	}
	writeJSON(w, 200, map[string]int{"totalDeviceCount": total, "enabledDeviceCount": enabled, "disabledDeviceCount": total - enabled})
	return nil
}

// serviceStatistics is GET /statistics/service: the devices connected to
// their edges as the edges last reported.
func (h *Hub) serviceStatistics(w http.ResponseWriter, _ *http.Request) error {
	n, err := h.fsm.connectedDevices()
	if err != nil {
		return err
	}
	writeJSON(w, 200, map[string]int{"connectedDeviceCount": n})
	return nil
}
