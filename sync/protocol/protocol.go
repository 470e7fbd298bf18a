package protocol

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/twin"
)

// Version is the protocol version; it is part of every path, so a hub can
// serve old and new edges side by side.
const Version = 1

// PathPrefix starts every path of the link.
const PathPrefix = "/sync/"

// Paths of the link, all POST.
const (
	PathHello    = "/sync/v1/hello"    // Hello → Welcome
	PathMessages = "/sync/v1/messages" // Messages → MessagesAck
	PathTwins    = "/sync/v1/twins"    // TwinsUp → TwinsAck
	PathPull     = "/sync/v1/pull"     // Pull → Push (long poll)
	PathMethods  = "/sync/v1/methods"  // MethodResult → empty
	// PathPresence carries a change of the edge's connected clients
	// between two pulls (PresenceReport → empty).
	PathPresence = "/sync/v1/presence"
)

// PathImages is the link's one GET: PathImages + "/sha256:<hex>" answers a
// module image's bytes (not a frame), with Range requests.
const PathImages = "/sync/v1/images"

// ContentType of every frame.
const ContentType = "application/cbor"

// Size limits.
const (
	MaxFrame      = 32 << 20 // decoded body
	CompressAbove = 1 << 10
)

// ErrFrame wraps every decoding error.
var ErrFrame = errors.New("bad sync frame")

// Hello opens a session: the edge names its instance id, so the hub keeps
// cursors per instance id (a wiped edge starts afresh).
type Hello struct {
	Version  int    `cbor:"1,keyasint"`
	Instance string `cbor:"2,keyasint"` // the edge's instance id (its twin replica id)
}

// Welcome answers Hello.
type Welcome struct {
	Version int `cbor:"1,keyasint"`
	// Cursors is, per upstream queue, the highest edge sequence number the
	// hub has received from this incarnation. It is for information: the edge
	// sends every message it holds whatever the cursor says (a clone of its
	// data directory may share the incarnation), and the hub recognises
	// retransmissions by their digests.
	Cursors map[string]uint64 `cbor:"2,keyasint,omitempty"`
	// TwinVV is what the hub holds of the twin replicas.
	TwinVV  crdt.VV `cbor:"3,keyasint,omitempty"`
	HubTime int64   `cbor:"4,keyasint"` // unix ms
	// Hub is the hub's twin replica id: TwinVV is its ack for tombstone GC.
	Hub string `cbor:"5,keyasint,omitempty"`
}

// SysGeneration is the system property, set by the edge from the sender's
// identity when the message is queued, that names the generationId of the
// device or module that sent it (IoT Hub's connectionDeviceGenerationId).
// The hub refuses messages of a generation that is no longer current.
const SysGeneration = "connectionDeviceGenerationId"

// Message is one queued device-to-cloud message.
type Message struct {
	Seq        uint64            `cbor:"1,keyasint"`
	ID         string            `cbor:"2,keyasint,omitempty"`
	Source     string            `cbor:"3,keyasint"` // devices/d[/modules/m]
	Props      map[string]string `cbor:"4,keyasint,omitempty"`
	Sys        map[string]string `cbor:"5,keyasint,omitempty"`
	Body       []byte            `cbor:"6,keyasint,omitempty"`
	EnqueuedAt int64             `cbor:"7,keyasint,omitempty"` // unix ms at the edge
	// EdgePath names the edges that carried the message before the one
	// sending this frame, the first the one it entered through (nested
	// edges); the receiver adds the sender. Empty for the sender's own
	// messages, which keeps their digest what it was.
	EdgePath []string `cbor:"8,keyasint,omitempty"`
}

// DigestSize is the length of a message digest (a truncated SHA-256).
const DigestSize = 16

// Digest names a message's content as the edge sent it: SHA-256 of its
// frame encoding (sequence number, message id, source, properties, system
// properties, body, edge enqueue time), cut to DigestSize bytes. The hub
// keeps it to recognise a retransmitted batch, so it is part of the
// protocol: a change of the encoding would make retransmissions across an
// upgrade look like other messages (TestDigestPinned holds it).
func Digest(m Message) ([]byte, error) {
	data, err := kv.Marshal(m)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	return sum[:DigestSize], nil
}

// Messages is a batch from one upstream queue, in queue order.
type Messages struct {
	Instance string    `cbor:"1,keyasint"`
	Queue    string    `cbor:"2,keyasint"`
	Msgs     []Message `cbor:"3,keyasint"`
}

// MessagesAck says the hub holds every message of the batch, up to UpTo
// (the batch's last sequence number).
type MessagesAck struct {
	UpTo       uint64 `cbor:"1,keyasint"`
	Appended   int    `cbor:"2,keyasint,omitempty"`
	Duplicates int    `cbor:"3,keyasint,omitempty"`
	// Collisions counts the messages of the batch whose sequence number the
	// hub had already stored, from this instance and queue, with other
	// content: another edge runs with this edge's instance id (a cloned data
	// directory). They were stored, not dropped.
	Collisions int `cbor:"4,keyasint,omitempty"`
	// Refused counts messages acknowledged but not stored: their source
	// is outside the edge's scope or was deleted (or created again) since
	// they were sent.
	Refused int `cbor:"5,keyasint,omitempty"`
}

// TwinsUp carries the edge's twin changes the hub lacks.
type TwinsUp struct {
	Instance string     `cbor:"1,keyasint"`
	Batch    twin.Batch `cbor:"2,keyasint"`
	// Generations names, per twin in Batch, the generationId of the
	// identity the edge wrote it for; the hub refuses (and counts) the
	// fields of a twin whose identity has since been created again.
	Generations Generations `cbor:"3,keyasint,omitempty"`
}

// Generations maps a twin id ("d" or "d/m") to its identity's
// generationId. An absent entry means "not known" and is not checked.
type Generations map[string]string

// TwinsAck returns the hub's version vector after the merge.
type TwinsAck struct {
	TwinVV crdt.VV `cbor:"1,keyasint,omitempty"`
	Hub    string  `cbor:"2,keyasint,omitempty"` // the hub's twin replica id
}

// Pull asks for what the hub has for this edge; the hub holds the request
// until there is something or Wait passes.
type Pull struct {
	Instance string  `cbor:"1,keyasint"`
	TwinVV   crdt.VV `cbor:"2,keyasint,omitempty"`
	// Scope is the digest of the identities the edge holds (from the last
	// Push); the hub sends the identities again when its digest differs.
	Scope string `cbor:"3,keyasint,omitempty"`
	// C2D is, per device, the highest cloud-to-device sequence number the
	// edge has stored.
	C2D    map[string]uint64 `cbor:"4,keyasint,omitempty"`
	WaitMs int64             `cbor:"5,keyasint,omitempty"`
	// Hub names the hub incarnation the C2D cursors count in (from the
	// last Push); a hub whose store was replaced ignores them.
	Hub string `cbor:"6,keyasint,omitempty"`
	// Backlog is how many messages waited in the edge's $upstream queues
	// when it sent the pull (the hub shows it in its fleet view).
	Backlog int64 `cbor:"7,keyasint,omitempty"`
	// Children are the edges below this one (nested edges) as it last
	// heard from them, its children's children included: the hub shows
	// the tree.
	Children []ChildStatus `cbor:"8,keyasint,omitempty"`
	// Presence is the connection state of the edge's MQTT clients that
	// changed since its last answered pull (the hub shows connectionState
	// and lastActivityTime); with PresenceFull it is every connected
	// client, and those it lacks are disconnected.
	Presence     []Presence `cbor:"9,keyasint,omitempty"`
	PresenceFull bool       `cbor:"10,keyasint,omitempty"`
}

// PresenceReport is what changed of an edge's connected clients since its
// last answered report, sent as it happens (a pull carries it too).
type PresenceReport struct {
	Instance string     `cbor:"1,keyasint"`
	Presence []Presence `cbor:"2,keyasint,omitempty"`
}

// Presence is one device's or module's connection to an edge.
type Presence struct {
	ID        string `cbor:"1,keyasint"` // "d" or "d/m"
	Connected bool   `cbor:"2,keyasint,omitempty"`
	Since     int64  `cbor:"3,keyasint,omitempty"` // unix ms the state began
	Activity  int64  `cbor:"4,keyasint,omitempty"` // unix ms of its last activity (0: none since the last report)
}

// ChildStatus is what a parent edge last heard from an edge below it.
type ChildStatus struct {
	Edge     string `cbor:"1,keyasint" json:"edge"`
	Parent   string `cbor:"2,keyasint,omitempty" json:"parent,omitempty"`   // the edge it links to
	LastSeen int64  `cbor:"3,keyasint,omitempty" json:"lastSeen,omitempty"` // unix ms of its last request
	// Backlog is how many messages waited in its $upstream queues at its
	// last pull.
	Backlog int64 `cbor:"4,keyasint,omitempty" json:"backlog"`
}

// Push answers Pull.
type Push struct {
	Twins     twin.Batch `cbor:"1,keyasint,omitempty"`
	TwinsMore bool       `cbor:"2,keyasint,omitempty"`
	// Identities is every identity in the edge's scope, sent when
	// HasScope is set (the edge replaces its cache: removals too).
	HasScope   bool         `cbor:"3,keyasint,omitempty"`
	Scope      string       `cbor:"4,keyasint,omitempty"`
	Identities []Identity   `cbor:"5,keyasint,omitempty"`
	C2D        []C2D        `cbor:"6,keyasint,omitempty"`
	Methods    []MethodCall `cbor:"7,keyasint,omitempty"`
	Hub        string       `cbor:"8,keyasint,omitempty"` // the hub's incarnation (its twin replica id)
	// TwinVV is what the hub held of the twin replicas when it made this
	// push: the edge's ack of the hub for tombstone GC.
	TwinVV crdt.VV `cbor:"9,keyasint,omitempty"`
	// Generations names the generationId of every twin in Twins.
	Generations Generations `cbor:"10,keyasint,omitempty"`
}

// C2D is one cloud-to-device message for a device behind the edge.
type C2D struct {
	Device     string            `cbor:"1,keyasint"`
	Seq        uint64            `cbor:"2,keyasint"`
	ID         string            `cbor:"3,keyasint,omitempty"`
	Props      map[string]string `cbor:"4,keyasint,omitempty"`
	Sys        map[string]string `cbor:"5,keyasint,omitempty"`
	Body       []byte            `cbor:"6,keyasint,omitempty"`
	EnqueuedAt int64             `cbor:"7,keyasint,omitempty"`
}

// MethodCall is a direct method for a device or module behind the edge.
type MethodCall struct {
	ID        string `cbor:"1,keyasint"`
	Target    string `cbor:"2,keyasint"` // d or d/m
	Name      string `cbor:"3,keyasint"`
	Payload   []byte `cbor:"4,keyasint,omitempty"` // JSON
	TimeoutMs int64  `cbor:"5,keyasint"`
}

// MethodResult is the edge's answer to a MethodCall. Status 404 means the
// target is not connected to the edge, 504 that it did not answer in time.
type MethodResult struct {
	ID      string `cbor:"1,keyasint"`
	Status  int    `cbor:"2,keyasint"`
	Payload []byte `cbor:"3,keyasint,omitempty"`
	Error   string `cbor:"4,keyasint,omitempty"`
}

// Encode returns the body for frame v and its Content-Encoding ("" or
// "gzip").
func Encode(v any) ([]byte, string, error) {
	data, err := kv.Marshal(v)
	if err != nil {
		return nil, "", err
	}
	if len(data) <= CompressAbove {
		return data, "", nil
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	_, _ = zw.Write(data)
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), "gzip", nil
}

// Decode reads a body with the given Content-Encoding into frame v; the
// decoded size is capped at MaxFrame, and anything malformed is an ErrFrame.
func Decode(r io.Reader, encoding string, v any) error {
	switch encoding {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return fmt.Errorf("%w: gzip: %v", ErrFrame, err)
		}
		defer zr.Close()
		r = zr
	default:
		return fmt.Errorf("%w: content encoding %q, want gzip or none", ErrFrame, encoding)
	}
	data, err := io.ReadAll(io.LimitReader(r, MaxFrame+1))
	if err != nil {
		return fmt.Errorf("%w: read: %v", ErrFrame, err)
	}
	if len(data) > MaxFrame {
		return fmt.Errorf("%w: larger than %d bytes", ErrFrame, MaxFrame)
	}
	return DecodeBytes(data, v)
}

// DecodeBytes decodes one uncompressed frame.
func DecodeBytes(data []byte, v any) error {
	if err := kv.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %v", ErrFrame, err)
	}
	return nil
}
