package route

import (
	"errors"
	"strings"
	"testing"
)

func topicMsg(topic string, sys map[string]string, body string) *Message {
	if sys == nil {
		sys = map[string]string{}
	}
	sys[SysTopic] = topic
	return &Message{Source: Source{Kind: Topic, Device: "edge", Topic: topic}, Sys: sys, Body: []byte(body)}
}

func TestTopicSourceMatching(t *testing.T) {
	topics := []string{"factory/line1/temp", "factory/line2/temp", "factory/line1/temp/raw", "factory", "office/temp", "factory/"}
	for _, tc := range []struct {
		from string
		want []string
	}{
		{"/topics/factory/+/temp", []string{"factory/line1/temp", "factory/line2/temp"}},
		{"/topics/factory/#", []string{"factory/line1/temp", "factory/line2/temp", "factory/line1/temp/raw", "factory", "factory/"}},
		{"/topics/#", topics},
		{"/topics/+", []string{"factory"}},
		{"/topics/+/+", []string{"office/temp", "factory/"}},
		{"/topics/factory/line1/temp", []string{"factory/line1/temp"}},
		{"/TOPICS/factory/line1/temp", []string{"factory/line1/temp"}}, // the keyword is case-insensitive…
		{"/topics/Factory/line1/temp", nil},                            // …the topic is not (MQTT)
		{"/topics/+/+/temp/#", []string{"factory/line1/temp", "factory/line2/temp", "factory/line1/temp/raw"}},
	} {
		r, err := Parse("r", "FROM "+tc.from+" INTO $upstream")
		if err != nil {
			t.Fatalf("%s: %v", tc.from, err)
		}
		for _, topic := range topics {
			want := strings.Contains("\x00"+strings.Join(tc.want, "\x00")+"\x00", "\x00"+topic+"\x00")
			if got := r.Matches(topicMsg(topic, nil, "")); got != want {
				t.Errorf("FROM %s on %q: %v, want %v", tc.from, topic, got, want)
			}
		}
	}
}

// TestTopicAndTelemetryApart: IoT Edge's sources (the default route
// /messages/* included) never take free-topic messages, and /topics/
// routes never take telemetry or twin changes.
func TestTopicAndTelemetryApart(t *testing.T) {
	free := topicMsg("factory/line1/temp", nil, "")
	for _, from := range []string{"/messages/*", "/*", "/messages/modules/m/*", "/twinChangeNotifications"} {
		r, err := Parse("r", "FROM "+from+" INTO $upstream")
		if err != nil {
			t.Fatal(err)
		}
		if r.Matches(free) {
			t.Errorf("FROM %s takes a free-topic message", from)
		}
	}
	r, err := Parse("r", "FROM /topics/# INTO $upstream")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []Source{{Device: "leaf"}, {Device: "e", Module: "m", Output: "o"}, {Kind: TwinChange, Device: "e"}} {
		if r.Matches(&Message{Source: s}) {
			t.Errorf("FROM /topics/# takes %+v", s)
		}
	}
	if got := DefaultConfig().Match(free); len(got) != 0 {
		t.Errorf("the default route takes a free-topic message: %+v", got)
	}
	if DefaultConfig().TakesTopics() {
		t.Error("the default configuration says it takes free topics")
	}
	if cfg := (&Config{Routes: []*Route{r}}); !cfg.TakesTopics() {
		t.Error("a configuration with FROM /topics/# says it takes no free topics")
	}
}

func TestTopicSourceErrors(t *testing.T) {
	for _, tc := range []struct {
		text, near, msg string
	}{
		{"FROM /topics INTO $upstream", "", "expected an MQTT topic filter"},
		{"FROM /topics/ INTO $upstream", "", "expected an MQTT topic filter"},
		{"FROM /topics/a/#/b INTO $upstream", "#/b", "# must be the last level"},
		{"FROM /topics/a/b+ INTO $upstream", "b+", "whole level"},
		{"FROM /topics/a/x#y INTO $upstream", "x#y", "whole level"},
		{"FROM /topics/a/* INTO $upstream", "*", "not an MQTT wildcard"},
		{"FROM /topics/$SYS/# INTO $upstream", "$SYS/#", "not free topics"},
		{"FROM /topics/devices/+/messages/events INTO $upstream", "devices/+/messages/event…", "IoT Hub topic space"},
		{"FROM /topics/a\x00b INTO $upstream", "a\x00b", "NUL"},
		{"FROM /topics/a/\xff INTO $upstream", "a/\xff", "UTF-8"},
		{"FROM /topics/" + strings.Repeat("a/", 64) + "a INTO $upstream", "a/a/a/a/a/a/a/a/a/a/a/a/…", "64 levels"},
		{"FROM /topics/a/b INTO", "", "expected $upstream"},
	} {
		_, err := Parse("r", tc.text)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("%q: %v, want a SyntaxError", tc.text, err)
			continue
		}
		if se.Near != tc.near || !strings.Contains(se.Msg, tc.msg) {
			t.Errorf("%q: near %q msg %q, want near %q msg containing %q", tc.text, se.Near, se.Msg, tc.near, tc.msg)
		}
		if !strings.HasPrefix(tc.text[se.Pos:], strings.TrimSuffix(se.Near, "…")) {
			t.Errorf("%q: position %d does not point at %q", tc.text, se.Pos, se.Near)
		}
	}
}

func TestTopicRouteCanonical(t *testing.T) {
	r, err := Parse("r", "from /Topics/factory/+/temp where $mqtt-topic <> 'x' into $upstream")
	if err != nil {
		t.Fatal(err)
	}
	want := "FROM /topics/factory/+/temp WHERE ($mqtt-topic <> 'x') INTO $upstream"
	if got := r.String(); got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}

// TestTopicConditions: the topic and the account are system properties
// ($mqtt-topic, $mqtt-account); a body is JSON when the MQTT 5 content type
// says so or, without one, when it parses as JSON.
func TestTopicConditions(t *testing.T) {
	sys := func(ct string) map[string]string {
		m := map[string]string{SysAccount: "plc1"}
		if ct != "" {
			m["contentType"] = ct
		}
		return m
	}
	for _, tc := range []struct {
		cond string
		m    *Message
		want string
	}{
		{"$mqtt-topic = 'factory/line1/temp'", topicMsg("factory/line1/temp", sys(""), ""), "true"},
		{"{$mqtt-topic} = 'factory/line1/temp'", topicMsg("factory/line1/temp", sys(""), ""), "true"},
		{"$mqtt-account = 'plc1'", topicMsg("a", sys(""), ""), "true"},
		{"starts_with($mqtt-topic, 'factory/')", topicMsg("factory/x", sys(""), ""), "true"},
		{"$body.t > 30", topicMsg("a", sys(""), `{"t":31}`), "true"},
		{"$body.t > 30", topicMsg("a", sys("application/json"), `{"t":31}`), "true"},
		{"$body.t > 30", topicMsg("a", sys("text/plain"), `{"t":31}`), "undefined"}, // the sender said it is not JSON
		{"$body.t > 30", topicMsg("a", sys(""), `31`), "undefined"},
		{"$body.t > 30", topicMsg("a", sys(""), `not json`), "undefined"},
	} {
		if got := evalCond(t, tc.cond, tc.m); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.cond, got, tc.want)
		}
	}
	// Telemetry keeps IoT Edge's rule: no content type, no $body.
	tel := &Message{Source: Source{Device: "d"}, Sys: map[string]string{}, Body: []byte(`{"t":31}`)}
	if got := evalCond(t, "$body.t > 30", tel); got != "undefined" {
		t.Errorf("telemetry without a content type: $body.t > 30 is %s, want undefined", got)
	}
}

func TestMatchTopic(t *testing.T) {
	for _, tc := range []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/b/", false},
		{"a/+", "a/", true},
		{"a/+", "a", false},
		{"a/#", "a", true},
		{"a/#", "ab", false},
		{"+/#", "a/b/c", true},
		{"a/+/c", "a//c", true},
		{"#", "", true},
		{"+", "", true},
		{"a", "", false},
	} {
		if got := matchTopic(strings.Split(tc.filter, "/"), tc.topic); got != tc.want {
			t.Errorf("%q on %q: %v, want %v", tc.filter, tc.topic, got, tc.want)
		}
	}
}
