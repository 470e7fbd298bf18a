// Package bag reads and writes the property bags of the Azure IoT Hub MQTT
// topic conventions: URL-encoded key=value entries joined by '&', as in
// devices/{d}/messages/events/{bag} (CONTRACT.md §4). Application and
// system properties ($.mid, $.cid, $.ct, $.ce, $.on, $.exp, $.cdid, $.cmid,
// …) share one bag; telling them apart, limiting sizes and deciding who may
// set what is the business of the broker and of the client, not of this
// package.
//
// It is pure and uses the standard library only, so that both the broker
// and the client SDK (which must not import the broker) can share it.
package bag

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Pair is one entry of a bag, unescaped.
type Pair struct {
	Key, Value string
}

// Parse splits a bag into its entries, unescaped, in the order they come.
// Empty entries ("a=1&&b=2") are skipped and a key without '=' has an
// empty value, as in C2D bags. A key may repeat; what that means is the
// caller's choice. An entry with an empty key or a bad escape is an error;
// the entries before it come back with the error.
func Parse(bag string) ([]Pair, error) {
	if bag == "" {
		return nil, nil
	}
	pairs := make([]Pair, 0, strings.Count(bag, "&")+1)
	for kv := range strings.SplitSeq(bag, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		uk, err1 := url.QueryUnescape(k)
		uv, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil || uk == "" {
			return pairs, fmt.Errorf("property bag entry %q is not URL-encoded key=value", kv)
		}
		pairs = append(pairs, Pair{uk, uv})
	}
	return pairs, nil
}

// Escape escapes a key or a value for a bag: query escaping with a space
// as %20, which every IoT Hub bag parser reads back as a space (a '+' is
// read as a space by some and not by others). The result holds no '/',
// '&', '=' or space, so a bag can end a topic.
func Escape(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }

// Builder writes a bag entry by entry. The zero value is ready to use.
type Builder struct {
	// Plus escapes a space as '+' (url.QueryEscape), as the broker
	// always has, rather than as %20 (Escape). Parse reads both back.
	Plus bool

	entries []string
}

// Add appends the entry key=value, escaped.
func (b *Builder) Add(key, value string) {
	esc := Escape
	if b.Plus {
		esc = url.QueryEscape
	}
	b.entries = append(b.entries, esc(key)+"="+esc(value))
}

// Sort orders the entries added so far by their escaped text, which gives
// a map's properties a stable order. Entries added later follow them.
func (b *Builder) Sort() { slices.Sort(b.entries) }

// String returns the bag: the entries joined by '&'.
func (b *Builder) String() string { return strings.Join(b.entries, "&") }

// Build writes pairs as a bag in their order, escaped by Escape.
func Build(pairs []Pair) string {
	var b Builder
	for _, p := range pairs {
		b.Add(p.Key, p.Value)
	}
	return b.String()
}
