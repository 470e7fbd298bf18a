package route

import (
	"strings"
	"unicode/utf8"
)

// System properties of a message published on a free MQTT topic. Route
// conditions read them as $mqtt-topic and $mqtt-account; the hub's event
// carries them in systemProperties.
const (
	SysTopic   = "mqtt-topic"   // the topic the message was published on
	SysAccount = "mqtt-account" // the local MQTT account (or IoT identity) that published it
)

// topicsPrefix starts a route source that takes free-topic messages:
// FROM /topics/<MQTT topic filter>.
const topicsPrefix = "/topics/"

// MaxFilterLevels bounds the levels of a /topics/ filter.
const MaxFilterLevels = 64

// topicSource reports whether the source at pos is a /topics source:
// "/topics" (case-insensitive, as the other source keywords) followed by
// '/', white space or the end.
func topicSource(src string, pos int) bool {
	const kw = "/topics"
	if !hasPrefixFold(src[pos:], kw) {
		return false
	}
	next := pos + len(kw)
	return next == len(src) || src[next] == '/' || isSpace(src[next])
}

// topicFilter reads the MQTT topic filter after /topics/ raw from the text
// (the route lexer would split it at '+' and '$'): everything up to the
// next white space. It returns the filter's levels, or a message and the
// offset of the fault.
func topicFilter(src string, start int) (levels []string, end int, msg string, at int) {
	end = start
	for end < len(src) && !isSpace(src[end]) {
		end++
	}
	filter := src[start:end]
	if filter == "" {
		return nil, end, "expected an MQTT topic filter after /topics/ (for example /topics/factory/+/temp or /topics/#)", start
	}
	if !utf8.ValidString(filter) {
		return nil, end, "the topic filter is not valid UTF-8", start
	}
	if filter[0] == '$' {
		return nil, end, "topics starting with $ are not free topics: they cannot be routed", start
	}
	levels = strings.Split(filter, "/")
	if len(levels) > MaxFilterLevels {
		return nil, end, "the topic filter has more than 64 levels", start
	}
	if levels[0] == "devices" {
		return nil, end, "devices/… is the IoT Hub topic space: route its telemetry with FROM /messages/…", start
	}
	off := start
	for i, l := range levels {
		if m := filterLevel(l, i == len(levels)-1); m != "" {
			return nil, end, m, off
		}
		off += len(l) + 1
	}
	return levels, end, "", 0
}

// filterLevel checks one level of a topic filter.
func filterLevel(l string, last bool) string {
	switch {
	case l == "#" && !last:
		return "# must be the last level of a topic filter"
	case l == "*":
		return "* is not an MQTT wildcard: use + for one level or # for every level below"
	case l != "#" && l != "+" && strings.ContainsAny(l, "+#"):
		return "+ and # must occupy a whole level of the topic filter"
	case strings.IndexByte(l, 0) >= 0:
		return "the topic filter contains a NUL character"
	}
	return ""
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// matchTopic reports whether an MQTT topic name matches the filter levels
// (MQTT 3.1.1 §4.7: + one level, # this level and every level below, and
// the parent itself).
func matchTopic(filter []string, topic string) bool {
	for i, f := range filter {
		if f == "#" {
			return true
		}
		lvl, rest, more := strings.Cut(topic, "/")
		if f != "+" && f != lvl {
			return false
		}
		if !more {
			return i == len(filter)-1 || i == len(filter)-2 && filter[i+1] == "#"
		}
		topic = rest
	}
	return false
}

// Topics reports whether the route takes free-topic messages (its source is
// /topics/<filter>).
func (r *Route) Topics() bool { return r.topic != nil }

// TakesTopics reports whether some route takes free-topic messages, so a
// broker can skip building the routing view of those publishes otherwise.
func (c *Config) TakesTopics() bool {
	for _, r := range c.Routes {
		if r.Topics() {
			return true
		}
	}
	return false
}
