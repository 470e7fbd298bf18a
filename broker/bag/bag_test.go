package bag

import (
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		bag  string
		want []Pair
		err  string // a substring of the error; "" for none
	}{
		{bag: ""},
		{bag: "&&"},
		{bag: "a=1", want: []Pair{{"a", "1"}}},
		{bag: "a=1&&b=2&", want: []Pair{{"a", "1"}, {"b", "2"}}},
		{bag: "flag&a=", want: []Pair{{"flag", ""}, {"a", ""}}},
		{bag: "a=1&a=2", want: []Pair{{"a", "1"}, {"a", "2"}}},
		{bag: "%24.mid=m1&sp=a%20b&pl=a+b&x=c%26d%3De", want: []Pair{{"$.mid", "m1"}, {"sp", "a b"}, {"pl", "a b"}, {"x", "c&d=e"}}},
		{bag: "$.ct=application%2Fjson", want: []Pair{{"$.ct", "application/json"}}},
		{bag: "a=1&%zz=1&b=2", want: []Pair{{"a", "1"}}, err: `property bag entry "%zz=1" is not URL-encoded key=value`},
		{bag: "a=%zz", err: `"a=%zz" is not URL-encoded`},
		{bag: "=v", err: `"=v" is not URL-encoded`},
	} {
		got, err := Parse(tc.bag)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Parse(%q): error %v, want %q", tc.bag, err, tc.err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Parse(%q) = %v, want %v", tc.bag, got, tc.want)
		}
	}
}

func TestBuilder(t *testing.T) {
	var b Builder
	b.Add("z", "1")
	b.Add("a b", "c&d/e+f")
	b.Sort()
	b.Add("$.mid", "m 1")
	if got, want := b.String(), "a%20b=c%26d%2Fe%2Bf&z=1&%24.mid=m%201"; got != want {
		t.Errorf("Builder = %q, want %q", got, want)
	}
	p := Builder{Plus: true}
	p.Add("a b", "c d")
	p.Add("$.cmid", "M")
	p.Sort()
	if got, want := p.String(), "%24.cmid=M&a+b=c+d"; got != want {
		t.Errorf("Builder{Plus} = %q, want %q", got, want)
	}
	if got := (&Builder{}).String(); got != "" {
		t.Errorf("empty Builder = %q", got)
	}
	if got, want := Build([]Pair{{"b", "1"}, {"a", ""}}), "b=1&a="; got != want {
		t.Errorf("Build = %q, want %q (in order)", got, want)
	}
}

// Whatever Parse accepts, Build writes back to a bag that parses to the
// same entries, with either escaping of spaces, and that can end a topic.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "a=b", "%24.mid=1&x", "a=%zz", "&&=&", "$.exp=2020-01-01T00:00:00Z", "ack=full&%24.to=x", "a+b=c%20d&%2F=%26"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pairs, err := Parse(s)
		if err != nil {
			return
		}
		enc := Build(pairs)
		if strings.ContainsAny(enc, "/ +") {
			t.Fatalf("Build(%v) = %q holds a raw '/', space or '+'", pairs, enc)
		}
		plus := Builder{Plus: true}
		for _, p := range pairs {
			plus.Add(p.Key, p.Value)
		}
		for _, enc := range []string{enc, plus.String()} {
			back, err := Parse(enc)
			if err != nil || !slices.Equal(back, pairs) {
				t.Fatalf("%q → %v → %q → %v (%v)", s, pairs, enc, back, err)
			}
		}
	})
}
