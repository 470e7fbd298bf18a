package route

import (
	"strings"
	"testing"
)

// seedRoutes are drawn from the table tests.
var seedRoutes = []string{
	"FROM /messages/* INTO $upstream",
	"SELECT * FROM /messages/* WHERE true INTO $upstream",
	`FROM /messages/modules/sensor/outputs/temp WHERE $body.t > 30 INTO BrokeredEndpoint("/modules/filter/inputs/in1")`,
	`FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO brokeredendpoint('/Modules/a-b/Inputs/in.1')`,
	"FROM /twinChangeNotifications WHERE twin_change_includes(properties.reported.temp) INTO $upstream",
	"FROM /* WHERE a = 'x' OR b = 'y' AND c = 'z' INTO $upstream",
	"FROM /* WHERE $body.a.arr[1].x ?? 'd' = 'y' INTO $upstream",
	"FROM /* WHERE {$dollar} = 'sys' AND $dollar = 'app' INTO $upstream",
	"FROM /* WHERE as_number(temperature) > 30 AND - 2 * 3 < 0x1F INTO $upstream",
	"FROM /* WHERE concat('a', lower(Kind)) || 'b' <> \"\\u00e9\" INTO $upstream",
	"FROM /* WHERE substring('hello', 1, 3) = 'ell' AND index_of(upper(x), 'L') >= -1.5e1 INTO $upstream",
	"FROM /* WHERE a-b = '1' AND a!='3' /* comment */ INTO $upstream",
	"FROM /* WHERE is_null(null) AND NOT is_defined(undefined) INTO $upstream",
	"FROM /messages/* INOT $upstream",
	"FROM /* WHERE (1 = 1 INTO $upstream",
	"FROM /* WHERE 'abc INTO $upstream",
	"FROM /topics/factory/+/temp INTO $upstream",
	"FROM /topics/# WHERE $mqtt-account = 'plc1' AND $body.t > 30 INTO $upstream",
	`FROM /Topics/a/b/#  WHERE starts_with({$mqtt-topic}, 'a/') INTO BrokeredEndpoint("/modules/m/inputs/i")`,
	"FROM /topics INTO $upstream",
	"FROM /topics/a/#/b INTO $upstream",
	"FROM /topics/$SYS/# INTO $upstream",
}

func FuzzParse(f *testing.F) {
	for _, s := range seedRoutes {
		f.Add(s)
	}
	msgs := []*Message{jsonMsg(testBody), {Source: Source{Kind: TwinChange}, Body: []byte(`{"properties":{"reported":{"temp":1}}}`)}, {},
		topicMsg("factory/line1/temp", map[string]string{SysAccount: "plc1"}, `{"t":31}`), topicMsg("a/b", nil, "")}
	f.Fuzz(func(t *testing.T, text string) {
		r, err := Parse("f", text)
		if err != nil {
			if r != nil {
				t.Fatal("route and error")
			}
			return
		}
		canon := r.String()
		r2, err := Parse("f", canon)
		if err != nil {
			t.Fatalf("canonical form of %q does not parse: %q: %v", text, canon, err)
		}
		if again := r2.String(); again != canon {
			t.Fatalf("not a fixed point:\n%q\n%q", canon, again)
		}
		if r2.Sink != r.Sink || r2.prefix != r.prefix || strings.Join(r2.topic, "/") != strings.Join(r.topic, "/") || (r2.topic == nil) != (r.topic == nil) {
			t.Fatalf("sink/source changed: %+v %+v", r, r2)
		}
		for _, m := range msgs {
			if r.Matches(m) != r2.Matches(m) {
				t.Fatalf("%q and %q disagree on %+v", text, canon, m)
			}
		}
	})
}

func FuzzMatch(f *testing.F) {
	for _, s := range seedRoutes {
		f.Add(s, testBody, "application/json", "utf-8", "sensor", "temp", "temperature", "35")
	}
	f.Add("FROM /* WHERE $body.a[0] = 1 INTO $upstream", `{"a":[1]}`, "application/json", "utf-16", "", "", "$body.a[0]", "1")
	f.Add("FROM /topics/factory/+/temp WHERE $body.t > 30 INTO $upstream", `{"t":31}`, "", "", "", "factory/l1/temp", "mqtt-account", "a")
	f.Fuzz(func(t *testing.T, text, body, ct, ce, module, output, key, val string) {
		r, err := Parse("f", text)
		if err != nil {
			return
		}
		m := &Message{
			Source: Source{Module: module, Output: output, Kind: SourceKind(len(body) % 3), Topic: output},
			App:    map[string]string{key: val},
			Sys:    map[string]string{"contentType": ct, "contentEncoding": ce, key: val},
			Body:   []byte(body),
		}
		a := r.Matches(m)
		cfg := &Config{Routes: []*Route{r}, TTL: DefaultTTL}
		if got := cfg.Match(m); (len(got) == 1) != a {
			t.Fatalf("Matches %v but Match %+v", a, got)
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		`{"routes":{"r":"FROM /* INTO $upstream"}}`,
		`{"schemaVersion":"1.1","routes":{"r":{"route":"FROM /* INTO $upstream","priority":1,"timeToLiveSecs":5,"maxBytes":1048576,"overflow":"drop-oldest"}},"storeAndForwardConfiguration":{"timeToLiveSecs":-1,"maxBytes":0,"overflow":"reject"}}`,
		`{"routes":{"r":{"route":"FROM /* INTO $upstream","maxBytes":-1,"overflow":"x"}},"storeAndForwardConfiguration":{"maxBytes":1e300}}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cfg, err := ParseConfig([]byte(s))
		if err != nil {
			return
		}
		check := func(what string, n int64, o string) {
			if n < 0 || (o != "" && o != OverflowReject && o != OverflowDropOldest) {
				t.Fatalf("%s: maxBytes %d overflow %q accepted from %s", what, n, o, s)
			}
		}
		check("global", cfg.MaxBytes, cfg.Overflow)
		for _, r := range cfg.Routes {
			check(r.Name, r.MaxBytes, r.Overflow)
		}
	})
}

// FuzzTopicFilter checks the /topics/ filter matcher against a direct
// reading of MQTT's rules.
func FuzzTopicFilter(f *testing.F) {
	for _, s := range [][2]string{{"factory/+/temp", "factory/l1/temp"}, {"a/#", "a"}, {"+/+", "a/"}, {"#", ""}, {"a/b", "a/b/c"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, filter, topic string) {
		r, err := Parse("f", "FROM /topics/"+filter+" INTO $upstream")
		if err != nil || strings.ContainsAny(topic, "+#") {
			return
		}
		want := refMatch(strings.Split(strings.TrimPrefix(r.Source, "/topics/"), "/"), strings.Split(topic, "/"))
		if got := r.Matches(topicMsg(topic, nil, "")); got != want {
			t.Fatalf("filter %q topic %q: %v, want %v", r.Source, topic, got, want)
		}
	})
}

func refMatch(f, t []string) bool {
	switch {
	case len(f) == 0:
		return len(t) == 0
	case f[0] == "#":
		return true
	case len(t) == 0:
		return false
	case f[0] != "+" && f[0] != t[0]:
		return false
	}
	return refMatch(f[1:], t[1:])
}
