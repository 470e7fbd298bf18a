package client

import (
	"maps"
	"strings"
	"testing"
	"time"
)

func TestBagRoundTrip(t *testing.T) {
	exp := time.Date(2030, 1, 2, 3, 4, 5, 600, time.UTC)
	for _, m := range []Message{
		{},
		{MessageID: "m1"},
		{Properties: map[string]string{"a": "1", "b c": "d e", "x/y": "&=%+?#", "ü": "€", "empty": ""}, MessageID: "m 2",
			CorrelationID: "c/1", ContentType: "application/json", ContentEncoding: "utf-8", ExpiryTime: exp},
	} {
		bag, err := encodeBag(m, "out/1")
		if err != nil {
			t.Fatal(err)
		}
		if strings.ContainsAny(bag, "/ +") {
			t.Errorf("bag %q holds a raw '/', space or '+'", bag)
		}
		var got Message
		if err := decodeBag(bag, &got); err != nil {
			t.Fatal(err)
		}
		if got.SystemProperties["$.on"] != "out/1" {
			t.Errorf("$.on lost in %q: %+v", bag, got)
		}
		if !maps.Equal(got.Properties, m.Properties) && len(m.Properties) > 0 || got.MessageID != m.MessageID ||
			got.CorrelationID != m.CorrelationID || got.ContentType != m.ContentType ||
			got.ContentEncoding != m.ContentEncoding || !got.ExpiryTime.Equal(m.ExpiryTime) {
			t.Errorf("round trip of %+v through %q gave %+v", m, bag, got)
		}
	}
	if bag, _ := encodeBag(Message{MessageID: "m", Properties: map[string]string{"z": "1", "a": "2"}}, ""); bag != "a=2&z=1&%24.mid=m" {
		t.Errorf("bag %q: want application properties sorted, then system ones", bag)
	}
	for _, bad := range []map[string]string{{"": "x"}, {"$.mid": "x"}, {"ack": "full"}, {"big": strings.Repeat("x", maxBag)}} {
		if _, err := encodeBag(Message{Properties: bad}, ""); err == nil {
			t.Errorf("properties %.40v accepted", bad)
		}
	}
}

func TestParseInput(t *testing.T) {
	for _, tc := range []struct {
		rest, input, mid string
		props            map[string]string
		cdid, cmid       string
		err              bool
	}{
		{rest: "in1/%24.mid=1&%24.cdid=gw&%24.cmid=a&k=v", input: "in1", mid: "1", cdid: "gw", cmid: "a", props: map[string]string{"k": "v"}},
		{rest: "in1/", input: "in1"},
		{rest: "in1", input: "in1"},
		{rest: "in1/flag", input: "in1", props: map[string]string{"flag": ""}},
		{rest: "/x=1", err: true},
		{rest: "in1/%zz=1", err: true},
	} {
		m, err := parseInput(tc.rest)
		if tc.err {
			if err == nil {
				t.Errorf("%q: no error", tc.rest)
			}
			continue
		}
		if err != nil || m.InputName != tc.input || m.MessageID != tc.mid || m.ConnectionDeviceID != tc.cdid ||
			m.ConnectionModuleID != tc.cmid || !maps.Equal(m.Properties, tc.props) {
			t.Errorf("%q: %+v %v", tc.rest, m, err)
		}
	}
}

func TestTopicQuery(t *testing.T) {
	q := topicQuery("?$rid=12&$version=7&$rid=13&bad%zz=1")
	if q["$rid"] != "12" || q["$version"] != "7" || len(q) != 2 {
		t.Errorf("%v", q)
	}
}

func TestBackoff(t *testing.T) {
	c := &Client{cfg: defaults()}
	for n := range 100 {
		d := c.backoff(n)
		want := min(DefaultMinBackoff<<min(n, 30), DefaultMaxBackoff)
		if n >= 30 {
			want = DefaultMaxBackoff
		}
		if d < want/2 || d > want {
			t.Fatalf("attempt %d: %v, want within [%v, %v]", n, d, want/2, want)
		}
	}
}

// The decoder never panics and whatever it accepts encodes back to a bag
// it reads the same.
func FuzzDecodeBag(f *testing.F) {
	for _, s := range []string{"", "a=b", "%24.mid=1&x", "a=%zz", "&&=&", "$.exp=2020-01-01T00:00:00Z", "ack=full&%24.to=x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, bag string) {
		var m Message
		if err := decodeBag(bag, &m); err != nil {
			return
		}
		_, _ = parseInput("in/" + bag)
		out := Message{Properties: m.Properties, MessageID: m.MessageID, CorrelationID: m.CorrelationID,
			ContentType: m.ContentType, ContentEncoding: m.ContentEncoding}
		enc, err := encodeBag(out, "")
		if err != nil {
			return // e.g. over the size limit once escaped
		}
		var back Message
		if err := decodeBag(enc, &back); err != nil {
			t.Fatalf("own encoding %q of %q unreadable: %v", enc, bag, err)
		}
		if !maps.Equal(back.Properties, out.Properties) || back.MessageID != out.MessageID || back.ContentType != out.ContentType {
			t.Fatalf("%q → %+v → %q → %+v", bag, out, enc, back)
		}
	})
}
