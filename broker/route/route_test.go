package route

import (
	"errors"
	"strings"
	"testing"
)

func TestSourceString(t *testing.T) {
	for _, tc := range []struct {
		src  Source
		want string
	}{
		{Source{Device: "leaf"}, "/messages/"},
		{Source{Device: "leaf", Output: "ignored"}, "/messages/"},
		{Source{Device: "e", Module: "m"}, "/messages/modules/m/"},
		{Source{Device: "e", Module: "m", Output: "o"}, "/messages/modules/m/outputs/o/"},
		{Source{Kind: TwinChange, Device: "e", Module: "m"}, "/twinChangeNotifications/"},
	} {
		if got := tc.src.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.src, got, tc.want)
		}
	}
}

// TestSourceMatching covers every row of the §2.1 matching table.
func TestSourceMatching(t *testing.T) {
	leaf := Source{Device: "leaf"}
	mod := Source{Device: "e", Module: "m"}
	modO := Source{Device: "e", Module: "m", Output: "o"}
	modO10 := Source{Device: "e", Module: "m", Output: "o10"}
	other := Source{Device: "e", Module: "m2", Output: "o"}
	twin := Source{Kind: TwinChange, Device: "e"}
	all := []Source{leaf, mod, modO, modO10, other, twin}
	for _, tc := range []struct {
		from string
		want []Source
	}{
		{"/*", all},
		{"/messages/*", []Source{leaf, mod, modO, modO10, other}},
		{"/messages", []Source{leaf, mod, modO, modO10, other}},
		{"/messages/modules/*", []Source{mod, modO, modO10, other}},
		{"/messages/modules/m/*", []Source{mod, modO, modO10}},
		{"/messages/modules/m", []Source{mod, modO, modO10}},
		{"/messages/modules/m/outputs/*", []Source{modO, modO10}},
		{"/messages/modules/m/outputs/o", []Source{modO}},
		{"/messages/modules/m/outputs/o/", []Source{modO}},
		{"/messages/modules/m/outputs/o*", []Source{modO}}, // one '*' is trimmed: still exact
		{"/MESSAGES/Modules/M/OUTPUTS/O", []Source{modO}},  // case-insensitive
		{"/twinChangeNotifications", []Source{twin}},
		{"/twinchangenotifications/*", []Source{twin}},
		{"/messages/modules/m2/outputs/o", []Source{other}},
	} {
		r, err := Parse("r", "FROM "+tc.from+" INTO $upstream")
		if err != nil {
			t.Fatalf("%s: %v", tc.from, err)
		}
		for _, s := range all {
			want := contains(tc.want, s)
			if got := r.Matches(&Message{Source: s}); got != want {
				t.Errorf("FROM %s, message from %s: match %v, want %v", tc.from, s, got, want)
			}
		}
	}
}

func contains(list []Source, s Source) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestParseRoute(t *testing.T) {
	for _, tc := range []struct {
		text, source, cond, endpoint, canon string
	}{
		{"FROM /messages/* INTO $upstream", "/messages/*", "", "$upstream", ""},
		{"from /messages/* into $UPSTREAM", "/messages/*", "", "$upstream", "FROM /messages/* INTO $upstream"},
		{"SELECT * FROM /messages/* WHERE true INTO $upstream", "/messages/*", "true", "$upstream", "FROM /messages/* WHERE true INTO $upstream"},
		{`FROM /messages/modules/sensor/outputs/temp WHERE $body.t > 30 INTO BrokeredEndpoint("/modules/filter/inputs/in1")`,
			"/messages/modules/sensor/outputs/temp", "$body.t > 30", "modules/filter/inputs/in1",
			`FROM /messages/modules/sensor/outputs/temp WHERE ($body.t > 30) INTO BrokeredEndpoint("/modules/filter/inputs/in1")`},
		{`FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO brokeredendpoint('/Modules/a-b/Inputs/in.1')`,
			"/messages/*", "NOT IS_DEFINED($connectionModuleId)", "modules/a-b/inputs/in.1",
			`FROM /messages/* WHERE (NOT IS_DEFINED($connectionModuleId)) INTO BrokeredEndpoint("/modules/a-b/inputs/in.1")`},
		{"FROM / messages / modules / 42 / * INTO $upstream", "/messages/modules/42/*", "", "$upstream", "FROM /messages/modules/42/* INTO $upstream"},
		{"FROM /messages/ INTO $upstream", "/messages/", "", "$upstream", ""},
		{"FROM /twinChangeNotifications WHERE twin_change_includes(properties.reported.temp) INTO $upstream",
			"/twinChangeNotifications", "twin_change_includes(properties.reported.temp)", "$upstream", ""},
	} {
		r, err := Parse("r", tc.text)
		if err != nil {
			t.Fatalf("%s: %v", tc.text, err)
		}
		if r.Source != tc.source || r.Condition != tc.cond || r.Sink.Endpoint() != tc.endpoint || r.Priority != DefaultPriority {
			t.Errorf("%s: source %q cond %q endpoint %q priority %d", tc.text, r.Source, r.Condition, r.Sink.Endpoint(), r.Priority)
		}
		canon := tc.canon
		if canon == "" {
			canon = tc.text
		}
		if got := r.String(); got != canon {
			t.Errorf("%s: String() = %s, want %s", tc.text, got, canon)
		}
	}
}

func TestRouteErrors(t *testing.T) {
	for _, tc := range []struct {
		text, error string
		sink        bool
	}{
		{"FROM /messages/* INOT $upstream", `route "r1": at offset 17 near "INOT": expected INTO`, false},
		{"", `route "r1": at end of route: expected FROM`, false},
		{"SELECT FROM /x INTO $upstream", `route "r1": at offset 7 near "FROM": expected * after SELECT`, false},
		{"FROM messages INTO $upstream", `near "messages": expected a source path starting with /`, false},
		{"FROM / INTO $upstream", `near "INTO": expected a source path segment or *`, false},
		{"FROM /a/(b) INTO $upstream", `near "(": expected a source path segment or *`, false},
		{"FROM /* INTO", `at end of route: expected $upstream or BrokeredEndpoint`, true},
		{"FROM /* INTO $downstream", `near "$downstream": unknown endpoint "$downstream"`, true},
		{`FROM /* INTO Endpoint("/modules/a/inputs/b")`, `unknown endpoint "Endpoint"`, true},
		{`FROM /* INTO BrokeredEndpoint("/modules/a/inputs")`, `want exactly /modules/{module}/inputs/{input}`, true},
		{`FROM /* INTO BrokeredEndpoint("/modules/a/inputs/b/c")`, `"/modules/a/inputs/b/c": want exactly`, true},
		{`FROM /* INTO BrokeredEndpoint("/modules/a/outputs/b")`, `want exactly`, true},
		{`FROM /* INTO BrokeredEndpoint("/modules//inputs/b")`, `want exactly`, true},
		{`FROM /* INTO BrokeredEndpoint(/modules/a/inputs/b)`, `BrokeredEndpoint needs a quoted path`, true},
		{`FROM /* INTO BrokeredEndpoint("/modules/a/inputs/b"`, `expected ) after the BrokeredEndpoint path`, false},
		{"FROM /* INTO $upstream extra", `near "extra": unexpected text after the sink`, false},
	} {
		_, err := Parse("r1", tc.text)
		if err == nil || !strings.Contains(err.Error(), tc.error) {
			t.Errorf("%q: err = %v, want it to contain %q", tc.text, err, tc.error)
			continue
		}
		if !errors.Is(err, ErrSink) != !tc.sink {
			t.Errorf("%q: errors.Is(ErrSink) = %v, want %v", tc.text, errors.Is(err, ErrSink), tc.sink)
		}
	}
}

func TestCaret(t *testing.T) {
	_, err := Parse("r1", "FROM /messages/* INOT $upstream")
	var se *SyntaxError
	if !errors.As(err, &se) {
		t.Fatal(err)
	}
	want := "FROM /messages/* INOT $upstream\n                 ^ expected INTO"
	if got := se.Caret(); got != want {
		t.Errorf("caret:\n%s\nwant\n%s", got, want)
	}
}

func TestSinkEndpoint(t *testing.T) {
	if got := (Sink{Upstream: true}).Endpoint(); got != "$upstream" {
		t.Error(got)
	}
	s := Sink{Module: "m", Input: `in"1`}
	if s.Endpoint() != `modules/m/inputs/in"1` || s.String() != `BrokeredEndpoint("/modules/m/inputs/in\"1")` {
		t.Errorf("%s %s", s.Endpoint(), s.String())
	}
	r, err := Parse("r", "FROM /* INTO "+s.String())
	if err != nil || r.Sink != s {
		t.Errorf("round trip: %v %+v", err, r)
	}
}

func TestTwinChangeIncludes(t *testing.T) {
	r, err := Parse("t", "FROM /twinChangeNotifications WHERE twin_change_includes(properties.reported.a.b) INTO $upstream")
	if err != nil {
		t.Fatal(err)
	}
	for body, want := range map[string]bool{
		`{"properties":{"reported":{"a":{"b":1}}}}`:    true,
		`{"properties":{"reported":{"a":{"b":null}}}}`: true,
		`{"properties":{"reported":{"a":{}}}}`:         false,
		`not json`:                                     false,
	} {
		m := &Message{Source: Source{Kind: TwinChange}, Body: []byte(body)}
		if got := r.Matches(m); got != want {
			t.Errorf("%s: %v, want %v", body, got, want)
		}
	}
	if _, err := Parse("t", "FROM /twinChangeNotifications WHERE twin_change_includes(foo.bar) INTO $upstream"); err == nil {
		t.Error("twin_change_includes(foo.bar) accepted")
	}
}
