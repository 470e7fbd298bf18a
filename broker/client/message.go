package client

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/broker/bag"
)

// Message is a telemetry message, a module output or input, or a
// cloud-to-device message.
type Message struct {
	Body []byte
	// Properties are the application properties (routes query them).
	Properties map[string]string

	MessageID       string    // $.mid
	CorrelationID   string    // $.cid
	ContentType     string    // $.ct, e.g. "application/json" (needed to route on $body)
	ContentEncoding string    // $.ce, e.g. "utf-8"
	ExpiryTime      time.Time // $.exp; zero means none

	// Set on received messages only.

	// InputName is the module input the message arrived on ("" for C2D).
	InputName string
	// ConnectionDeviceID and ConnectionModuleID name the sender ($.cdid,
	// $.cmid) as the broker authenticated it.
	ConnectionDeviceID, ConnectionModuleID string
	// SystemProperties holds the other system properties received, by
	// their wire names ("$.to", "$.uid", …).
	SystemProperties map[string]string
}

// Wire names of the system properties (azure-iot-edge.md §1.6).
const (
	propMessageID       = "$.mid"
	propCorrelationID   = "$.cid"
	propContentType     = "$.ct"
	propContentEncoding = "$.ce"
	propOutputName      = "$.on"
	propExpiry          = "$.exp"
	propConnDevice      = "$.cdid"
	propConnModule      = "$.cmid"
)

// Bag entries that are system properties without a "$." prefix.
var bareSystem = map[string]bool{"ack": true, "iothub-operation": true}

// Limits of the broker (broker/topic.go, broker.Options.MaxPayload) and of
// IoT Hub: a message over them would be refused by closing the connection.
const (
	maxBag  = 16 << 10
	maxBody = 256 << 10
)

// ErrBadMessage is wrapped by errors about a message that cannot be sent
// as it is (no request reached the broker).
var ErrBadMessage = errors.New("invalid message")

// encodeBag writes m's properties as an IoT Hub property bag: URL-encoded
// k=v pairs joined by '&', system properties by their wire names, in a
// stable order. output, when set, becomes $.on.
func encodeBag(m Message, output string) (string, error) {
	if len(m.Body) > maxBody {
		return "", fmt.Errorf("%w: the body is %d bytes; the limit is %d", ErrBadMessage, len(m.Body), maxBody)
	}
	var b bag.Builder
	for k, v := range m.Properties {
		if k == "" {
			return "", fmt.Errorf("%w: an application property has an empty name", ErrBadMessage)
		}
		if strings.HasPrefix(k, "$.") || bareSystem[k] {
			return "", fmt.Errorf("%w: application property %q has a system property's name; use the Message fields", ErrBadMessage, k)
		}
		b.Add(k, v)
	}
	b.Sort()
	for _, p := range []struct{ k, v string }{
		{propMessageID, m.MessageID}, {propCorrelationID, m.CorrelationID},
		{propContentType, m.ContentType}, {propContentEncoding, m.ContentEncoding}, {propOutputName, output},
	} {
		if p.v != "" {
			b.Add(p.k, p.v)
		}
	}
	if !m.ExpiryTime.IsZero() {
		b.Add(propExpiry, m.ExpiryTime.UTC().Format(time.RFC3339Nano))
	}
	s := b.String()
	if len(s) > maxBag {
		return "", fmt.Errorf("%w: its properties encode to %d bytes; the limit is %d", ErrBadMessage, len(s), maxBag)
	}
	return s, nil
}

// decodeBag parses a received property bag into m. A bare key (no '=')
// is an empty value, as in C2D bags. On an error, m keeps the entries
// before the bad one.
func decodeBag(s string, m *Message) error {
	pairs, err := bag.Parse(s)
	for _, p := range pairs {
		m.setProperty(p.Key, p.Value)
	}
	return err
}

func (m *Message) setProperty(k, v string) {
	switch k {
	case propMessageID:
		m.MessageID = v
	case propCorrelationID:
		m.CorrelationID = v
	case propContentType:
		m.ContentType = v
	case propContentEncoding:
		m.ContentEncoding = v
	case propConnDevice:
		m.ConnectionDeviceID = v
	case propConnModule:
		m.ConnectionModuleID = v
	case propExpiry:
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			m.ExpiryTime = t
			return
		}
		m.system(k, v)
	default:
		if strings.HasPrefix(k, "$.") || bareSystem[k] {
			m.system(k, v)
			return
		}
		if m.Properties == nil {
			m.Properties = map[string]string{}
		}
		m.Properties[k] = v
	}
}

func (m *Message) system(k, v string) {
	if m.SystemProperties == nil {
		m.SystemProperties = map[string]string{}
	}
	m.SystemProperties[k] = v
}

// parseInput splits an input topic's tail "{input}/{bag}" (the bag never
// holds a raw '/').
func parseInput(rest string) (Message, error) {
	var m Message
	input, bag := rest, ""
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		input, bag = rest[:i], rest[i+1:]
	}
	if input == "" {
		return m, errors.New("input topic without an input name")
	}
	m.InputName = input
	return m, decodeBag(bag, &m)
}

// topicQuery parses the "?k=v&…" tail of a $iothub topic.
func topicQuery(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(strings.TrimPrefix(s, "?"), "&") {
		k, v, _ := strings.Cut(kv, "=")
		uk, err1 := url.QueryUnescape(k)
		uv, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil || uk == "" {
			continue
		}
		if _, dup := out[uk]; !dup {
			out[uk] = uv
		}
	}
	return out
}
