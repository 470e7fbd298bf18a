package route

import "strings"

// SourceKind says what produced a message.
type SourceKind uint8

const (
	// Telemetry is a device-to-cloud message from a leaf device or module.
	Telemetry SourceKind = iota
	// TwinChange is a reported-properties change notification.
	TwinChange
	// Topic is a message a local MQTT client published on a free topic;
	// only routes FROM /topics/<filter> take it.
	Topic
)

// Source identifies where a message comes from.
type Source struct {
	Kind   SourceKind
	Device string // sending device (informational; routes do not match on it)
	Module string // sending module, "" for a leaf device
	Output string // module output ($.on), "" for none
	Topic  string // the MQTT topic of a Topic message
}

// String returns the source string routes match against (§2.1):
// /messages/, /messages/modules/{m}/, /messages/modules/{m}/outputs/{o}/
// or /twinChangeNotifications/, or /topics/{topic} for a Topic message.
// Output is ignored without Module.
func (s Source) String() string {
	switch {
	case s.Kind == TwinChange:
		return "/twinChangeNotifications/"
	case s.Kind == Topic:
		return topicsPrefix + s.Topic
	case s.Module == "":
		return "/messages/"
	case s.Output == "":
		return "/messages/modules/" + s.Module + "/"
	}
	return "/messages/modules/" + s.Module + "/outputs/" + s.Output + "/"
}

// Message is what a route condition sees. App and Sys hold application and
// system properties; Sys is keyed by IoT Hub name (messageId,
// correlationId, contentType, contentEncoding, connectionDeviceId,
// connectionModuleId, outputName, inputName, enqueuedTime, userId, to, …).
// Lookups in both are case-insensitive, as in IoT Edge.
type Message struct {
	Source Source
	App    map[string]string
	Sys    map[string]string
	Body   []byte
}

// Sink is a route's endpoint: $upstream, or a module input written
// BrokeredEndpoint("/modules/{Module}/inputs/{Input}").
type Sink struct {
	Upstream bool
	Module   string
	Input    string
}

// Endpoint returns a stable endpoint id: "$upstream" or
// "modules/{m}/inputs/{i}". Queue names derive from it (Target.Queue).
func (s Sink) Endpoint() string {
	if s.Upstream {
		return "$upstream"
	}
	return "modules/" + s.Module + "/inputs/" + s.Input
}

// String returns the sink as route text.
func (s Sink) String() string {
	if s.Upstream {
		return "$upstream"
	}
	return "BrokeredEndpoint(" + quote("/modules/"+s.Module+"/inputs/"+s.Input) + ")"
}

// quote writes a double-quoted route string literal.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// sourcePrefix normalises a route source the way IoT Edge does: drop one
// trailing '*', then trailing slashes, and append one '/'.
func sourcePrefix(src string) string {
	return strings.TrimRight(strings.TrimSuffix(src, "*"), "/") + "/"
}

// hasPrefixFold is a case-insensitive strings.HasPrefix.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
