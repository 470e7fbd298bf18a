package route

import (
	"errors"
	"strings"
	"testing"
)

func TestOperators(t *testing.T) {
	m := jsonMsg(testBody)
	for _, tc := range []struct{ cond, want string }{
		// arithmetic
		{"1 + 2", "3"}, {"5 - 7", "-2"}, {"3 * 4", "12"}, {"7 / 2", "3.5"}, {"7 % 4", "3"},
		{"1 / 0", "+Inf"}, {"0 / 0", "undefined"}, {"5 % 0", "undefined"},
		{"- 3", "-3"}, {"-3", "-3"}, {"- $body.t", "-31.5"}, {"- $body.name", "undefined"},
		{"$body.t + 1", "32.5"}, {"$body.name + 1", "undefined"}, {"$body.missing * 2", "undefined"},
		{"0x1F", "31"}, {"0XfF", "255"}, {"1.5e2", "150"}, {".5", "0.5"}, {"-.5", "-0.5"}, {"2E-1", "0.2"},
		// concatenation
		{"'a' || 'b'", `"ab"`}, {"$body.name || '!'", `"pump!"`}, {"$body.t || 'x'", "undefined"},
		// comparison
		{"1 < 2", "true"}, {"2 <= 2", "true"}, {"3 > 4", "false"}, {"4 >= 5", "false"},
		{"'a' < 'b'", "true"}, {"'B' < 'a'", "true"}, {"'abc' = 'abc'", "true"}, {"'abc' = 'ABC'", "false"},
		{"1 = 1", "true"}, {"1 != 1", "false"}, {"1 <> 2", "true"},
		{"true = true", "true"}, {"true <> false", "true"}, {"true < false", "undefined"},
		{"null = null", "true"}, {"null <> null", "false"}, {"null <= null", "true"}, {"null < null", "false"},
		{"$body.nil = null", "true"}, {"$body.t = null", "undefined"},
		{"$body.t > 30", "true"}, {"$body.t = '31.5'", "undefined"}, {"$body.name = 'pump'", "true"},
		{"$body.missing = 1", "undefined"}, {"undefined = undefined", "undefined"},
		{"temperature = '35'", "true"}, {"temperature > '4'", "false"}, {"as_number(temperature) > 30", "true"},
		// coalesce
		{"$body.missing ?? 'dflt'", `"dflt"`}, {"$body.name ?? 'dflt'", `"pump"`}, {"$body.nil ?? 1", "null"},
		{"undefined ?? undefined", "undefined"},
	} {
		if got := evalCond(t, tc.cond, m); got != tc.want {
			t.Errorf("%s = %s, want %s", tc.cond, got, tc.want)
		}
	}
}

func TestThreeValuedLogic(t *testing.T) {
	vals := map[string]string{"T": "true", "F": "false", "U": "undefined", "N": "$body.name"} // N: a string, unknown
	for _, tc := range []struct{ a, op, b, want string }{
		{"T", "AND", "T", "true"}, {"T", "AND", "F", "false"}, {"T", "AND", "U", "undefined"},
		{"F", "AND", "T", "false"}, {"F", "AND", "F", "false"}, {"F", "AND", "U", "false"},
		{"U", "AND", "T", "undefined"}, {"U", "AND", "F", "false"}, {"U", "AND", "U", "undefined"},
		{"T", "OR", "T", "true"}, {"T", "OR", "F", "true"}, {"T", "OR", "U", "true"},
		{"F", "OR", "T", "true"}, {"F", "OR", "F", "false"}, {"F", "OR", "U", "undefined"},
		{"U", "OR", "T", "true"}, {"U", "OR", "F", "undefined"}, {"U", "OR", "U", "undefined"},
		{"N", "AND", "F", "false"}, {"N", "OR", "T", "true"}, {"N", "AND", "T", "undefined"},
	} {
		cond := vals[tc.a] + " " + tc.op + " " + vals[tc.b]
		if got := evalCond(t, cond, jsonMsg(testBody)); got != tc.want {
			t.Errorf("%s %s %s = %s, want %s", tc.a, tc.op, tc.b, got, tc.want)
		}
	}
	for cond, want := range map[string]string{
		"NOT true": "false", "NOT false": "true", "NOT undefined": "undefined", "not null": "undefined",
		"NOT $body.on": "false", "NOT $body.name": "undefined", "true and false": "false", "true Or false": "true",
	} {
		if got := evalCond(t, cond, jsonMsg(testBody)); got != want {
			t.Errorf("%s = %s, want %s", cond, got, want)
		}
	}
}

func TestPrecedence(t *testing.T) {
	for _, tc := range []struct{ cond, canon string }{
		{"1 + 2 * 3 = 7", "((1 + (2 * 3)) = 7)"},
		{"1 - 2 - 3", "((1 - 2) - 3)"},
		{"a = 'x' OR b = 'y' AND c = 'z'", "((a = 'x') OR ((b = 'y') AND (c = 'z')))"},
		{"NOT $body.on = true", "((NOT $body.on) = true)"},
		{"NOT is_defined(x) AND true", "((NOT is_defined(x)) AND true)"},
		{"- 2 * 3", "((- 2) * 3)"},
		{"1 < 2 = true", "((1 < 2) = true)"},
		{"'a' || 'b' = 'ab'", "(('a' || 'b') = 'ab')"},
		{"$body.x ?? 1 > 2 OR false", "($body.x ?? ((1 > 2) OR false))"},
		{"(1 + 2) * 3", "((1 + 2) * 3)"},
		{"a /* comment */ = 'b'", "(a = 'b')"},
	} {
		r, err := Parse("p", "FROM /* WHERE "+tc.cond+" INTO $upstream")
		if err != nil {
			t.Fatalf("%s: %v", tc.cond, err)
		}
		if got := r.String(); got != "FROM /* WHERE "+tc.canon+" INTO $upstream" {
			t.Errorf("%s: got %s, want %s", tc.cond, got, tc.canon)
		}
	}
	if got := evalCond(t, "1 + 2 * 3 = 7", nil); got != "true" {
		t.Errorf("1 + 2 * 3 = 7: %s", got)
	}
}

func TestFunctions(t *testing.T) {
	m := jsonMsg(testBody)
	for _, tc := range []struct{ cond, want string }{
		{"abs(-2)", "2"}, {"exp(0)", "1"}, {"power(2, 10)", "1024"}, {"square(3)", "9"},
		{"ceiling(1.2)", "2"}, {"floor(-1.2)", "-2"}, {"sign(-4)", "-1"}, {"sign(0)", "0"}, {"sign(3)", "1"},
		{"sqrt(16)", "4"}, {"sqrt(-1)", "undefined"}, {"abs($body.name)", "undefined"}, {"ABS(-1)", "1"},
		{"as_number('42')", "42"}, {"as_number(' -1.5e1 ')", "-15"}, {"as_number('x')", "undefined"},
		{"as_number(7)", "7"}, {"as_number($body.on)", "undefined"}, {"as_number('0x10')", "undefined"},
		{"is_bool(true)", "true"}, {"is_bool(1)", "false"}, {"is_defined(undefined)", "false"},
		{"is_defined($body.nil)", "true"}, {"is_defined($body.missing)", "false"}, {"is_null($body.nil)", "true"},
		{"is_null(undefined)", "false"}, {"is_number($body.t)", "true"}, {"is_number(temperature)", "false"},
		{"is_string(temperature)", "true"}, {"is_string(nosuch)", "false"},
		{"concat('a', 'b', 'c')", `"abc"`}, {"concat('a', $body.t)", "undefined"},
		{"length('héllo')", "5"}, {"length('😀')", "2"}, {"length($body.t)", "undefined"},
		{"lower('AbC')", `"abc"`}, {"upper('AbC')", `"ABC"`},
		{"substring('hello', 1)", `"ello"`}, {"substring('hello', 1, 3)", `"ell"`},
		{"substring('hello', 9)", "undefined"}, {"substring('hello', 1.5)", "undefined"}, {"substring('hello', 2, 9)", "undefined"},
		{"index_of('hello', 'l')", "2"}, {"index_of('hello', 'z')", "-1"}, {"index_of('é😀x', 'x')", "3"},
		{"starts_with('hello', 'he')", "true"}, {"ends_with('hello', 'lo')", "true"}, {"contains('hello', 'ell')", "true"},
		{"contains('hello', 'L')", "false"}, {"starts_with($body.t, 'x')", "undefined"},
	} {
		if got := evalCond(t, tc.cond, m); got != tc.want {
			t.Errorf("%s = %s, want %s", tc.cond, got, tc.want)
		}
	}
}

func TestBodyQueries(t *testing.T) {
	for _, tc := range []struct {
		name, cond, want string
		edit             func(*Message)
	}{
		{"top", "$body.t", "31.5", nil},
		{"nested", "$body.a.b.c", `"deep"`, nil},
		{"array index", "$body.a.arr[0]", "10", nil},
		{"through array", "$body.a.arr[1].x", `"y"`, nil},
		{"index out of range", "$body.a.arr[7]", "undefined", nil},
		{"index on object", "$body.a[0]", "undefined", nil},
		{"object is no value", "$body.a.b", "undefined", nil},
		{"array is no value", "$body.a.arr", "undefined", nil},
		{"missing", "$body.nope.deeper", "undefined", nil},
		{"json null", "$body.nil", "null", nil},
		{"case-insensitive $body", "$BODY.name", `"pump"`, nil},
		{"keys are case-sensitive", "$body.NAME", "undefined", nil},
		{"content type case", "$body.t", "31.5", func(m *Message) { m.Sys["contentType"] = "Application/JSON" }},
		{"charset parameter", "$body.t", "31.5", func(m *Message) { m.Sys["contentType"] = "application/json; charset=utf-8" }},
		{"not json", "$body.t", "undefined", func(m *Message) { m.Sys["contentType"] = "text/plain" }},
		{"no content type", "$body.t", "undefined", func(m *Message) { delete(m.Sys, "contentType") }},
		{"no encoding is utf-8", "$body.t", "31.5", func(m *Message) { delete(m.Sys, "contentEncoding") }},
		{"bad encoding", "$body.t", "undefined", func(m *Message) { m.Sys["contentEncoding"] = "latin1" }},
		{"utf-16", "$body.name", `"pump"`, func(m *Message) { m.Sys["contentEncoding"] = "UTF-16"; m.Body = utf16le(testBody) }},
		{"invalid json", "$body.t", "undefined", func(m *Message) { m.Body = []byte("{") }},
		{"array body", "$body.t", "undefined", func(m *Message) { m.Body = []byte("[1]") }},
		{"too big", "$body.t", "undefined", func(m *Message) { m.Body = append(m.Body, make([]byte, MaxBodyBytes)...) }},
		{"app property shadows", "$body.t", `"shadow"`, func(m *Message) { m.App["$body.t"] = "shadow" }},
		{"escaped skips app property", "{$body.t}", "31.5", func(m *Message) { m.App["$body.t"] = "shadow" }},
	} {
		m := jsonMsg(testBody)
		if tc.edit != nil {
			tc.edit(m)
		}
		if got := evalCond(t, tc.cond, m); got != tc.want {
			t.Errorf("%s: %s = %s, want %s", tc.name, tc.cond, got, tc.want)
		}
	}
}

func utf16le(s string) []byte {
	var b []byte
	for _, u := range units(s) {
		b = append(b, byte(u), byte(u>>8))
	}
	return b
}

func TestPropertyResolution(t *testing.T) {
	m := jsonMsg(testBody)
	for _, tc := range []struct{ cond, want string }{
		{"temperature", `"35"`}, {"TEMPERATURE", `"35"`}, {"kind", `"alarm"`}, {"nosuch", "undefined"},
		{"empty", `""`},
		{"$connectionDeviceId", `"d1"`}, {"$CONNECTIONMODULEID", `"sensor"`}, {"$nosuch", "undefined"},
		{"$dollar", `"app"`},   // app property "$dollar" wins over system property "dollar"
		{"{$dollar}", `"sys"`}, // {$x} forces the system property
		{"{$messageId}", `"m-1"`}, {"$messageId", `"m-1"`},
		{"$x[0]", "undefined"}, // brackets without $body: never a property
		{"$body", "undefined"},
	} {
		if got := evalCond(t, tc.cond, m); got != tc.want {
			t.Errorf("%s = %s, want %s", tc.cond, got, tc.want)
		}
	}
	var nilMaps Message
	if got := evalCond(t, "$x = 'a' OR y = 'b'", &nilMaps); got != "undefined" {
		t.Errorf("nil maps: %s", got)
	}
}

func TestLexerQuirks(t *testing.T) {
	// IoT Edge's lexer takes the longest match, so identifier characters
	// glue operators to names; these are single application properties.
	m := &Message{App: map[string]string{"a-b": "1", "x*2": "2", "a!": "3", "e5": "no"}}
	for _, tc := range []struct{ cond, want string }{
		{"a-b", `"1"`}, {"x*2", `"2"`}, {"a!=b", "undefined"}, {"a!='3'", "true"},
		{"e5", "undefined"}, // lexes as a malformed real, as in IoT Edge
		{"'it\\'s' = \"it's\"", "true"}, {"'\\u00e9\\\\' = 'é\\\\'", "true"}, {"'\\ud83d\\ude00' = '😀'", "true"},
	} {
		if got := evalCond(t, tc.cond, m); got != tc.want {
			t.Errorf("%s = %s, want %s", tc.cond, got, tc.want)
		}
	}
}

func TestConditionErrors(t *testing.T) {
	for _, tc := range []struct{ cond, near, msg string }{
		{"temperature > 30", ">", "property values are strings"},
		{"$connectionModuleId = 1", "=", "string and number"},
		{"1 + 'a'", "+", "want number"},
		{"NOT 'a'", "NOT", "unary NOT"},
		{"- 'a'", "-", "unary -"},
		{"'a' AND true", "AND", "want bool"},
		{"1 || 'a'", "||", "want string"},
		{"lower(1)", "lower", "argument 1"},
		{"nosuch(1)", "nosuch", "unknown function"},
		{"abs()", "abs", "takes 1 arguments"},
		{"concat('a')", "concat", "2 or more"},
		{"substring('a', 1, 2, 3)", "substring", "2 to 3"},
		{"(1 = 1", "INTO", "missing closing )"},
		{"1 = 1)", ")", "expected INTO"},
		{"'abc", "'abc INTO $upstream", "unterminated"},
		{"true AND FALSE", "AND", "have bool and string"},
		{"'a\\nb' = 'x'", "'a", "unterminated string or invalid escape"},
		{"a @ b", "@", "expected INTO"},
		{"@", "@", "invalid symbol"},
		{"a[0] = 1", "a[0]", "only allowed in $body"},
		{"$body.a[x] = 1", "$body.a[x]", "invalid $body query"},
		{"$body. = 1", "$body.", "empty"},
		{"{a}", "a", "expected a $property"},
		{"twin_change_includes(properties.reported.x)", "twin_change_includes", "needs FROM /twinChangeNotifications"},
		{"", "INTO", "expected an expression"},
		{strings.Repeat("(", 100) + "1" + strings.Repeat(")", 100), "(", "nested deeper than 64"},
		{strings.Repeat("NOT ", 100) + "true", "NOT", "nested deeper than 64"},
	} {
		_, err := Parse("r1", "FROM /* WHERE "+tc.cond+" INTO $upstream")
		var se *SyntaxError
		if !errors.As(err, &se) || !errors.Is(err, ErrSyntax) {
			t.Errorf("%q: err = %v, want a SyntaxError", tc.cond, err)
			continue
		}
		if se.Near != tc.near || !strings.Contains(se.Msg, tc.msg) {
			t.Errorf("%q: near %q msg %q; want near %q msg containing %q", tc.cond, se.Near, se.Msg, tc.near, tc.msg)
		}
		if !strings.Contains(err.Error(), `route "r1": `) {
			t.Errorf("%q: error %q does not name the route", tc.cond, err)
		}
	}
}

func TestLongChainsAndDepth(t *testing.T) {
	chain := "a = '1'" + strings.Repeat(" OR a = '1'", 500)
	if got := evalCond(t, chain, &Message{App: map[string]string{"a": "1"}}); got != "true" {
		t.Errorf("500-term OR = %s", got)
	}
	_, err := Parse("r", "FROM /* WHERE 1"+strings.Repeat(" + 1", maxHeight+1)+" INTO $upstream")
	if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), "too long") {
		t.Errorf("over-long chain: %v", err)
	}
	if _, err := Parse("r", strings.Repeat("x", MaxRouteLen+1)); !errors.Is(err, ErrSyntax) {
		t.Errorf("over-long route: %v", err)
	}
	nested := strings.Repeat("(", 60) + "1" + strings.Repeat(")", 60) + " = 1"
	if got := evalCond(t, nested, nil); got != "true" {
		t.Errorf("60 levels: %s", got)
	}
}
