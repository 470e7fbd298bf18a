package broker

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/outpost-edge/outpost/broker/bag"
)

// Inbound topic kinds of the IoT Hub MQTT conventions (CONTRACT.md §4).
type topicKind uint8

const (
	topicOther          topicKind = iota // not an IoT Hub topic: free pub/sub, by policy only
	topicTelemetry                       // devices/{d}[/modules/{m}]/messages/events[/{bag}][/]
	topicTwinGet                         // $iothub/twin/GET/?$rid={rid}
	topicTwinReported                    // $iothub/twin/PATCH/properties/reported/?$rid={rid}
	topicMethodResponse                  // $iothub/methods/res/{status}/?$rid={rid}
)

// inbound is a parsed client PUBLISH topic.
type inbound struct {
	kind           topicKind
	device, module string
	bag            string // telemetry: the raw property bag
	rid            string
	status         int // method response
}

var errTopic = errors.New("malformed IoT Hub topic")

// parseTopic recognises the IoT Hub topics a client may publish to. Other
// topics come back as topicOther.
func parseTopic(topic string) (inbound, error) {
	switch {
	case strings.HasPrefix(topic, "devices/"):
		return parseTelemetry(topic)
	case strings.HasPrefix(topic, "$iothub/twin/GET/"):
		rid, err := requestID(strings.TrimPrefix(topic, "$iothub/twin/GET/"), true)
		return inbound{kind: topicTwinGet, rid: rid}, err
	case strings.HasPrefix(topic, "$iothub/twin/PATCH/properties/reported/"):
		rid, err := requestID(strings.TrimPrefix(topic, "$iothub/twin/PATCH/properties/reported/"), false)
		return inbound{kind: topicTwinReported, rid: rid}, err
	case strings.HasPrefix(topic, "$iothub/methods/res/"):
		return parseMethodResponse(strings.TrimPrefix(topic, "$iothub/methods/res/"))
	}
	return inbound{kind: topicOther}, nil
}

func parseTelemetry(topic string) (inbound, error) {
	// devices/{d}/messages/events[/{bag}] or devices/{d}/modules/{m}/messages/events[/{bag}]
	rest := topic[len("devices/"):]
	device, rest, _ := strings.Cut(rest, "/")
	in := inbound{kind: topicTelemetry, device: device}
	if m, ok := strings.CutPrefix(rest, "modules/"); ok {
		in.module, rest, _ = strings.Cut(m, "/")
		if in.module == "" {
			return inbound{}, fmt.Errorf("%w %q: empty module id", errTopic, topic)
		}
	}
	after, ok := strings.CutPrefix(rest, "messages/events")
	if !ok || (after != "" && after[0] != '/') {
		return inbound{kind: topicOther}, nil
	}
	if device == "" {
		return inbound{}, fmt.Errorf("%w %q: empty device id", errTopic, topic)
	}
	in.bag = strings.TrimSuffix(strings.TrimPrefix(after, "/"), "/")
	return in, nil
}

// requestID reads $rid from a "?$rid=…&…" suffix.
func requestID(s string, required bool) (string, error) {
	q, err := topicQuery(s)
	if err != nil {
		return "", err
	}
	rid := q["$rid"]
	if rid == "" && required {
		return "", fmt.Errorf("%w: $rid is missing; add ?$rid=<request id> to the topic", errTopic)
	}
	return rid, nil
}

func parseMethodResponse(s string) (inbound, error) {
	status, query, ok := strings.Cut(s, "/")
	if !ok {
		return inbound{}, fmt.Errorf("%w: want $iothub/methods/res/{status}/?$rid={rid}", errTopic)
	}
	code, err := strconv.Atoi(status)
	if err != nil {
		return inbound{}, fmt.Errorf("%w: method status %q is not an integer", errTopic, status)
	}
	rid, err := requestID(query, true)
	return inbound{kind: topicMethodResponse, status: code, rid: rid}, err
}

// topicQuery parses "?k=v&k2=v2" (the leading '?' optional).
func topicQuery(s string) (map[string]string, error) {
	s = strings.TrimPrefix(s, "?")
	out := map[string]string{}
	if s == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, "&") {
		k, v, _ := strings.Cut(kv, "=")
		uk, err1 := url.QueryUnescape(k)
		uv, err2 := url.QueryUnescape(v)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("%w: bad escape in %q", errTopic, kv)
		}
		if _, dup := out[uk]; !dup { // the first one wins, as in IoT Hub
			out[uk] = uv
		}
	}
	return out, nil
}

// System properties as they appear in property bags, and their IoT Hub
// names (azure-iot-edge.md §1.6).
var bagToSys = map[string]string{
	"$.mid": "messageId", "$.cid": "correlationId", "$.ct": "contentType", "$.ce": "contentEncoding",
	"$.on": "outputName", "$.exp": "absoluteExpiryTime", "$.to": "to", "$.uid": "userId", "ack": "ack",
	"$.schema": "messageSchema", "$.ctime": "creationTime", "iothub-operation": "operation",
	"$.ifid": "interfaceId", "$.sub": "componentName",
	"$.cdid": "connectionDeviceId", "$.cmid": "connectionModuleId",
}

// Inbound, the sender may not set who it is: those come from the session.
var sysFromSession = map[string]bool{"connectionDeviceId": true, "connectionModuleId": true, sysGeneration: true}

// sysGeneration names the sender's generationId (IoT Hub's
// connectionDeviceGenerationId; sync/protocol.SysGeneration): the hub
// refuses messages of an identity deleted (or created again) since.
const sysGeneration = "connectionDeviceGenerationId"

var sysToBag = func() map[string]string {
	m := make(map[string]string, len(bagToSys))
	for b, s := range bagToSys {
		m[s] = b
	}
	return m
}()

// parseBag splits a URL-encoded property bag into application and system
// properties. A repeated key keeps its last value.
func parseBag(s string) (app, sys map[string]string, err error) {
	app, sys = map[string]string{}, map[string]string{}
	if len(s) > maxBag {
		return nil, nil, fmt.Errorf("property bag is %d bytes; the limit is %d", len(s), maxBag)
	}
	pairs, err := bag.Parse(s)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range pairs {
		if name, ok := bagToSys[p.Key]; ok {
			if !sysFromSession[name] {
				sys[name] = p.Value
			}
			continue
		}
		app[p.Key] = p.Value
	}
	return app, sys, nil
}

const maxBag = 16 << 10

// encodeBag writes properties as a URL-encoded bag, system properties by
// their wire names, in a stable order.
func encodeBag(app, sys map[string]string) string {
	b := bag.Builder{Plus: true}
	for k, v := range sys {
		if wire, ok := sysToBag[k]; ok {
			b.Add(wire, v)
		}
	}
	for k, v := range app {
		b.Add(k, v)
	}
	b.Sort()
	return b.String()
}
