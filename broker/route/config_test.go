package route

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

const manifest = `{
  "schemaVersion": "1.1",
  "$version": 7,
  "routes": {
    "r1": "FROM /messages/modules/sensor/outputs/temp WHERE $body.t > 30 INTO BrokeredEndpoint(\"/modules/filter/inputs/in1\")",
    "r2": { "route": "FROM /messages/modules/filter/outputs/* INTO $upstream", "priority": 0, "timeToLiveSecs": 86400 },
    "leaf": "FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO $upstream",
    "all": { "Route": "FROM /messages/* INTO $upstream", "PRIORITY": 3, "unknownField": true },
    "gone": null
  },
  "storeAndForwardConfiguration": { "timeToLiveSecs": 7200, "storeLimits": { "maxSizeBytes": 1000000 } }
}`

func TestParseConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range cfg.Routes {
		names = append(names, r.Name)
	}
	if !reflect.DeepEqual(names, []string{"all", "leaf", "r1", "r2"}) || cfg.TTL != 2*time.Hour || cfg.SchemaVersion != "1.1" {
		t.Fatalf("routes %v ttl %v schema %q", names, cfg.TTL, cfg.SchemaVersion)
	}
	r2 := cfg.Routes[3]
	if r2.Priority != 0 || r2.TTL != 24*time.Hour || cfg.Routes[0].Priority != 3 || cfg.Routes[0].TTL != 0 || cfg.Routes[2].Priority != DefaultPriority {
		t.Errorf("priorities/ttls: %+v %+v", r2, cfg.Routes[0])
	}
}

func TestMatch(t *testing.T) {
	cfg, err := ParseConfig([]byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	up := Sink{Upstream: true}
	filter := Sink{Module: "filter", Input: "in1"}
	for _, tc := range []struct {
		name string
		msg  *Message
		want []Target
	}{
		{"hot sensor reading", jsonMsg(`{"t":31}`), []Target{
			{Sink: up, Priority: 3, TTL: 2 * time.Hour, Route: "all"},
			{Sink: filter, Priority: DefaultPriority, TTL: 2 * time.Hour, Route: "r1"},
		}},
		{"cold sensor reading", jsonMsg(`{"t":3}`), []Target{{Sink: up, Priority: 3, TTL: 2 * time.Hour, Route: "all"}}},
		// leaf (default priority) and all (priority 3) both reach $upstream: 3 wins
		{"leaf device", &Message{Source: Source{Device: "leaf"}}, []Target{{Sink: up, Priority: 3, TTL: 2 * time.Hour, Route: "all"}}},
		// r2 (priority 0, 1 day) beats all (priority 3)
		{"filter output", &Message{Source: Source{Module: "filter", Output: "out"}}, []Target{{Sink: up, Priority: 0, TTL: 24 * time.Hour, Route: "r2"}}},
		{"twin change: no route", &Message{Source: Source{Kind: TwinChange}}, nil},
	} {
		got := cfg.Match(tc.msg)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}

func TestMatchDedupTies(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"routes":{
		"a":{"route":"FROM /* INTO $upstream","priority":1,"timeToLiveSecs":60},
		"b":{"route":"FROM /* INTO $upstream","priority":1,"timeToLiveSecs":600},
		"c":{"route":"FROM /* INTO $upstream","priority":1},
		"d":{"route":"FROM /* INTO $upstream","priority":2,"timeToLiveSecs":9}},
		"storeAndForwardConfiguration":{"timeToLiveSecs":-1}}`))
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Match(&Message{})
	// c inherits the global TTL, which is "never" (0): the longest.
	want := []Target{{Sink: Sink{Upstream: true}, Priority: 1, TTL: 0, Route: "c"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v want %+v", got, want)
	}
	if q := got[0].Queue(); q != "$upstream_Pri1" {
		t.Errorf("queue %q", q)
	}
	if q := (Target{Sink: Sink{Module: "m", Input: "i"}, Priority: DefaultPriority}).Queue(); q != "modules/m/inputs/i" {
		t.Errorf("queue %q", q)
	}
}

func TestDefaultConfig(t *testing.T) {
	cfg := DefaultConfig()
	if cfg.TTL != 7200*time.Second || len(cfg.Routes) != 1 {
		t.Fatalf("%+v", cfg)
	}
	got := cfg.Match(&Message{Source: Source{Module: "m", Output: "o"}})
	if len(got) != 1 || !got[0].Upstream || got[0].Queue() != "$upstream" {
		t.Errorf("%+v", got)
	}
	if got := cfg.Match(&Message{Source: Source{Kind: TwinChange}}); len(got) != 0 {
		t.Errorf("twin change routed: %+v", got)
	}
}

func TestConfigTTL(t *testing.T) {
	for _, tc := range []struct {
		saf  string
		want time.Duration
	}{
		{``, DefaultTTL}, {`,"storeAndForwardConfiguration":{}`, DefaultTTL},
		{`,"storeAndForwardConfiguration":{"timeToLiveSecs":60}`, time.Minute},
		{`,"storeAndForwardConfiguration":{"timeToLiveSecs":0}`, 0},
		{`,"storeAndForwardConfiguration":{"timeToLiveSecs":-1}`, 0},
	} {
		cfg, err := ParseConfig([]byte(`{"routes":{}` + tc.saf + `}`))
		if err != nil || cfg.TTL != tc.want {
			t.Errorf("%s: ttl %v err %v, want %v", tc.saf, cfg.TTL, err, tc.want)
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, json string
		is         error
		msg        string
	}{
		{"not json", `{`, ErrConfig, "$edgeHub desired properties"},
		{"no routes", `{"schemaVersion":"1.1"}`, ErrConfig, "routes: missing"},
		{"routes not object", `{"routes":[]}`, ErrConfig, "desired properties"},
		{"bad schema", `{"schemaVersion":"2.0","routes":{}}`, ErrSchema, `schemaVersion "2.0"`},
		{"numeric schema", `{"schemaVersion":1.1,"routes":{}}`, ErrSchema, "want a string"},
		{"object route in 1.0", `{"schemaVersion":"1.0","routes":{"r":{"route":"FROM /* INTO $upstream"}}}`, ErrSchema, `route "r": object routes need`},
		{"dot in name", `{"routes":{"a.b":"FROM /* INTO $upstream"}}`, ErrName, `route "a.b"`},
		{"dollar in name", `{"routes":{"$a":"FROM /* INTO $upstream"}}`, ErrName, `route "$a"`},
		{"hash in name", `{"routes":{"a#":"FROM /* INTO $upstream"}}`, ErrName, `route "a#"`},
		{"space in name", `{"routes":{"a b":"FROM /* INTO $upstream"}}`, ErrName, `route "a b"`},
		{"empty name", `{"routes":{"":"FROM /* INTO $upstream"}}`, ErrName, `route ""`},
		{"priority 10", `{"routes":{"r":{"route":"FROM /* INTO $upstream","priority":10}}}`, ErrPriority, `route "r": priority 10: want an integer 0`},
		{"priority -1", `{"routes":{"r":{"route":"FROM /* INTO $upstream","priority":-1}}}`, ErrPriority, `priority -1`},
		{"priority 1.5", `{"routes":{"r":{"route":"FROM /* INTO $upstream","priority":1.5}}}`, ErrPriority, `priority 1.5`},
		{"priority string", `{"routes":{"r":{"route":"FROM /* INTO $upstream","priority":"1"}}}`, ErrPriority, `priority "1"`},
		{"ttl negative", `{"routes":{"r":{"route":"FROM /* INTO $upstream","timeToLiveSecs":-5}}}`, ErrTTL, `route "r": timeToLiveSecs -5`},
		{"ttl too big", `{"routes":{"r":{"route":"FROM /* INTO $upstream","timeToLiveSecs":4294967296}}}`, ErrTTL, `timeToLiveSecs 4294967296`},
		{"global ttl", `{"routes":{},"storeAndForwardConfiguration":{"timeToLiveSecs":-2}}`, ErrTTL, "storeAndForwardConfiguration.timeToLiveSecs -2"},
		{"no route text", `{"routes":{"r":{"priority":1}}}`, ErrConfig, `route "r": object route without "route"`},
		{"maxBytes negative", `{"routes":{"r":{"route":"FROM /* INTO $upstream","maxBytes":-1}}}`, ErrCap, `route "r": maxBytes -1: want a whole number`},
		{"maxBytes string", `{"routes":{"r":{"route":"FROM /* INTO $upstream","maxBytes":"1MiB"}}}`, ErrCap, `route "r": maxBytes "1MiB"`},
		{"maxBytes fraction", `{"routes":{"r":{"route":"FROM /* INTO $upstream","maxBytes":1.5}}}`, ErrCap, `maxBytes 1.5`},
		{"overflow unknown", `{"routes":{"r":{"route":"FROM /* INTO $upstream","overflow":"drop-newest"}}}`, ErrCap, `route "r": overflow "drop-newest": want "reject" or "drop-oldest"`},
		{"global maxBytes", `{"routes":{},"storeAndForwardConfiguration":{"maxBytes":true}}`, ErrCap, "storeAndForwardConfiguration.maxBytes true"},
		{"global overflow", `{"routes":{},"storeAndForwardConfiguration":{"overflow":5}}`, ErrCap, "storeAndForwardConfiguration.overflow 5"},
		{"route is number", `{"routes":{"r":5}}`, ErrConfig, `route "r": want a string or an object`},
		{"unknown sink", `{"routes":{"r":"FROM /* INTO $downstream"}}`, ErrSink, `route "r": at offset 13 near "$downstream"`},
		{"brokered 3 segments", `{"routes":{"r":"FROM /* INTO BrokeredEndpoint(\"/modules/m/inputs\")"}}`, ErrSink, `route "r": at offset 30`},
		{"syntax", `{"routes":{"r1":"FROM /messages/* WHERE a = 'x' INOT $upstream"}}`, ErrSyntax, `route "r1": at offset 31 near "INOT": expected INTO`},
	} {
		_, err := ParseConfig([]byte(tc.json))
		if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: err = %v; want %v containing %q", tc.name, err, tc.is, tc.msg)
		}
	}
}

func TestParseConfigReportsAllErrors(t *testing.T) {
	_, err := ParseConfig([]byte(`{"routes":{"a":"FROM","b":{"route":"FROM /* INTO $upstream","priority":99},"ok":"FROM /* INTO $upstream"}}`))
	if !errors.Is(err, ErrSyntax) || !errors.Is(err, ErrPriority) || !strings.Contains(err.Error(), `route "a"`) || !strings.Contains(err.Error(), `route "b"`) {
		t.Errorf("err = %v", err)
	}
}

func TestParseConfigSchemaVersions(t *testing.T) {
	for _, v := range []string{``, `"schemaVersion":"1.0",`, `"schemaVersion":"1.2",`, `"schemaVersion":"1.3",`} {
		if _, err := ParseConfig([]byte(`{` + v + `"routes":{"r":"FROM /* INTO $upstream"}}`)); err != nil {
			t.Errorf("%s: %v", v, err)
		}
	}
}

func TestParseConfigCaps(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"schemaVersion":"1.1","routes":{
		"hot":{"route":"FROM /messages/modules/a/* INTO $upstream","priority":0,"maxBytes":1048576,"overflow":"drop-oldest"},
		"bulk":{"route":"FROM /messages/* INTO $upstream","priority":5,"maxBytes":null},
		"local":"FROM /messages/modules/b/* INTO BrokeredEndpoint(\"/modules/c/inputs/in\")"},
		"storeAndForwardConfiguration":{"timeToLiveSecs":60,"maxBytes":536870912,"overflow":"reject"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxBytes != 512<<20 || cfg.Overflow != OverflowReject {
		t.Fatalf("global caps %d %q", cfg.MaxBytes, cfg.Overflow)
	}
	got := cfg.Match(&Message{Source: Source{Module: "a", Output: "o"}})
	want := []Target{{Sink: Sink{Upstream: true}, Priority: 0, TTL: time.Minute, Route: "hot", MaxBytes: 1 << 20, Overflow: OverflowDropOldest}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("hot route:\n got %+v\nwant %+v", got, want)
	}
	got = cfg.Match(&Message{Source: Source{Module: "b", Output: "o"}})
	want = []Target{
		{Sink: Sink{Upstream: true}, Priority: 5, TTL: time.Minute, Route: "bulk", Overflow: OverflowReject},
		{Sink: Sink{Module: "c", Input: "in"}, Priority: DefaultPriority, TTL: time.Minute, Route: "local", Overflow: OverflowReject},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("routes inheriting the global policy:\n got %+v\nwant %+v", got, want)
	}
}
