package hub

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
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
	return h.twinDocWith(id, v, h.presence(id.ID()))
}

// twinDocWith is twinDoc with the identity's presence read already.
func (h *Hub) twinDocWith(id identity.Identity, v *twin.View, p Presence) map[string]any {
	doc := v.ServiceDoc()
	version := v.Version()
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

// maxBulkDevices is how many devices one bulk request may name, as on IoT
// Hub.
const maxBulkDevices = 100

// bulkDevice is one entry of POST /devices: a device with its import mode.
type bulkDevice struct {
	identity.JSON
	ID         string `json:"id"`
	ImportMode string `json:"importMode"`
	ETag       string `json:"eTag"` // IoT Hub's spelling; "etag" matches too
}

// BulkResult is IoT Hub's BulkRegistryOperationResult.
type BulkResult struct {
	IsSuccessful bool        `json:"isSuccessful"`
	Errors       []BulkError `json:"errors"`
	Warnings     []BulkError `json:"warnings"`
}

// BulkError is one device a bulk request could not write.
type BulkError struct {
	DeviceID     string `json:"deviceId"`
	ErrorCode    string `json:"errorCode"`
	ErrorStatus  string `json:"errorStatus"`
	ModuleID     string `json:"moduleId,omitempty"`
	WarningCode  string `json:"warningCode,omitempty"`
	WarningState string `json:"warningStatus,omitempty"`
}

// bulkDevices is POST /devices: up to 100 devices created, updated or
// deleted, each on its own (IoT Hub's bulk registry operation). The
// answer is 200 when every one succeeded, else 400, with what failed.
func (h *Hub) bulkDevices(w http.ResponseWriter, r *http.Request) error {
	var in []bulkDevice
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		return fmt.Errorf("%w: want a JSON array of devices, each with \"id\" and \"importMode\" (create, update, updateIfMatchETag, delete, deleteIfMatchETag): %v", ErrInvalid, err)
	}
	if len(in) == 0 || len(in) > maxBulkDevices {
		return fmt.Errorf("%w: a bulk request names 1 to %d devices, not %d", ErrInvalid, maxBulkDevices, len(in))
	}
	res := BulkResult{IsSuccessful: true, Errors: []BulkError{}, Warnings: []BulkError{}}
	for _, d := range in {
		if err := h.bulkOne(r.Context(), d); err != nil {
			res.IsSuccessful = false
			code, status := bulkErrorCode(err)
			res.Errors = append(res.Errors, BulkError{DeviceID: cmp.Or(d.ID, d.DeviceID), ErrorCode: code, ErrorStatus: status + ": " + err.Error()})
		}
	}
	if !res.IsSuccessful {
		writeJSON(w, 400, res)
		return nil
	}
	writeJSON(w, 200, res)
	return nil
}

func (h *Hub) bulkOne(ctx context.Context, d bulkDevice) error {
	id := cmp.Or(d.ID, d.DeviceID)
	if id == "" {
		return fmt.Errorf("%w: a device without \"id\"", ErrInvalid)
	}
	if d.DeviceID != "" && d.DeviceID != id {
		return fmt.Errorf("%w: \"id\" %q and \"deviceId\" %q differ", ErrInvalid, id, d.DeviceID)
	}
	d.JSON.DeviceID = id
	etag := d.ETag
	if a := d.JSON.Authentication; a != nil && a.SymmetricKey != nil {
		// The SDKs send empty keys for "generate them".
		if len(a.SymmetricKey.PrimaryKey) == 0 && len(a.SymmetricKey.SecondaryKey) == 0 {
			a.SymmetricKey = nil
		}
	}
	switch strings.ToLower(d.ImportMode) {
	case "create":
		if _, ok, _ := h.ids().Get(id); ok {
			return fmt.Errorf("%w: device %q already exists", errConflict, id)
		}
		_, err := h.PutDevice(ctx, d.JSON)
		return err
	case "update", "createorupdate", "":
		_, err := h.PutDevice(ctx, d.JSON)
		return err
	case "updateifmatchetag":
		if etag == "" {
			return fmt.Errorf("%w: importMode updateIfMatchETag needs the device's \"eTag\"", ErrInvalid)
		}
		_, err := h.PutDeviceIf(ctx, d.JSON, etag)
		return err
	case "delete", "deleteifmatchetag":
		if strings.EqualFold(d.ImportMode, "deleteIfMatchETag") {
			old, err := h.Identity(id)
			if err != nil {
				return err
			}
			if err := checkIdentityETag(id, old, true, etag); err != nil || etag == "" {
				return cmp.Or(err, fmt.Errorf("%w: importMode deleteIfMatchETag needs the device's \"eTag\"", ErrInvalid))
			}
		}
		return h.DeleteDevice(ctx, id)
	}
	return fmt.Errorf("%w: importMode %q: want create, update, updateIfMatchETag, delete or deleteIfMatchETag", ErrInvalid, d.ImportMode)
}

var errConflict = errors.New("conflict")

func bulkErrorCode(err error) (code, status string) {
	switch {
	case errors.Is(err, errConflict):
		return "DeviceAlreadyExists", "409"
	case errors.Is(err, ErrNotFound):
		return "DeviceNotFound", "404"
	case errors.Is(err, ErrPrecondition):
		return "PreconditionFailed", "412"
	case errors.Is(err, ErrInvalid):
		return "ArgumentInvalid", "400"
	}
	return "ServerError", "500"
}
