package route

import (
	"encoding/binary"
	"encoding/json"
	"mime"
	"strconv"
	"strings"
	"unicode/utf16"
)

// MaxBodyBytes bounds the bodies $body queries look into (IoT Edge's
// message size limit); larger bodies make every body query undefined.
const MaxBodyBytes = 256 << 10

// pathSeg is one step of a $body path: a key, then an optional [index].
type pathSeg struct {
	key   string
	index int // -1: none
}

type bodyPath []pathSeg

// parseBodyPath validates IoT Edge's JsonPath subset: segments separated
// by '.', each an identifier optionally followed by one [n].
func parseBodyPath(q string) (bodyPath, string) {
	if q == "" {
		return nil, "$body query is empty"
	}
	var p bodyPath
	for _, part := range strings.Split(q, ".") {
		seg := pathSeg{key: part, index: -1}
		if i := strings.IndexByte(part, '['); i >= 0 {
			if !strings.HasSuffix(part, "]") {
				return nil, "expected ']' at the end of " + strconv.Quote(part)
			}
			n, err := strconv.Atoi(part[i+1 : len(part)-1])
			if err != nil || n < 0 || strings.ContainsAny(part[i+1:len(part)-1], "+-") {
				return nil, "array index in " + strconv.Quote(part) + " is not a non-negative integer"
			}
			seg.key, seg.index = part[:i], n
		}
		if seg.key == "" || strings.ContainsAny(seg.key, "[]") {
			return nil, "empty or malformed segment in " + strconv.Quote(q)
		}
		p = append(p, seg)
	}
	return p, ""
}

// evalCtx carries one message through the conditions of all routes; the
// body is decoded at most once per mode.
type evalCtx struct {
	m          *Message
	src        string   // m.Source.String(), computed once; "" for a Topic message
	typed, any docState // with and without the content-type check
}

func newCtx(m *Message) *evalCtx {
	if m == nil {
		m = &Message{}
	}
	c := &evalCtx{m: m}
	if m.Source.Kind != Topic { // /topics/ routes match the topic itself (Route.matches)
		c.src = m.Source.String()
	}
	return c
}

type docState struct {
	done bool
	doc  map[string]any // nil: no JSON object body
}

func (c *evalCtx) bodyValue(p bodyPath) value {
	doc := c.document(false)
	if doc == nil {
		return undef
	}
	v, ok := walk(doc, p)
	if !ok {
		return undef // IoT Hub semantics; edgeHub itself returns null here
	}
	switch x := v.(type) {
	case nil:
		return nullV
	case bool:
		return boolV(x)
	case float64:
		return numV(x)
	case string:
		return strV(x)
	}
	return undef // objects and arrays are not values
}

// twinIncludes is twin_change_includes: true when the path is present in
// the twin-change body, false when absent, undefined without a body.
func (c *evalCtx) twinIncludes(p bodyPath) value {
	doc := c.document(true)
	if doc == nil {
		return undef
	}
	_, ok := walk(doc, p)
	return boolV(ok)
}

func walk(doc map[string]any, p bodyPath) (any, bool) {
	var cur any = doc
	for _, s := range p {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[s.key]; !ok {
			return nil, false
		}
		if s.index >= 0 {
			arr, ok := cur.([]any)
			if !ok || s.index >= len(arr) {
				return nil, false
			}
			cur = arr[s.index]
		}
	}
	return cur, true
}

// document decodes the body once. Twin-change notifications are JSON by
// construction, so anyType skips the content-type check for them.
func (c *evalCtx) document(anyType bool) map[string]any {
	st := &c.typed
	if anyType {
		st = &c.any
	}
	if !st.done {
		st.done, st.doc = true, decodeBody(c.m, anyType)
	}
	return st.doc
}

func decodeBody(m *Message, anyType bool) map[string]any {
	if len(m.Body) > MaxBodyBytes {
		return nil
	}
	if ct := lookupSys(m, "contentType"); !anyType && !isJSON(ct) && (ct != "" || m.Source.Kind != Topic) {
		return nil // a free-topic message without a content type is tried as JSON
	}
	text, ok := decodeText(m.Body, lookupSys(m, "contentEncoding"))
	if !ok {
		return nil
	}
	var doc map[string]any
	if json.Unmarshal([]byte(text), &doc) != nil {
		return nil
	}
	return doc
}

func lookupSys(m *Message, name string) string {
	v, _ := lookup(m.Sys, name)
	return v
}

// isJSON accepts "application/json" (case-insensitive, as edgeHub does)
// and, as an extension, parameters such as ";charset=utf-8".
func isJSON(ct string) bool {
	if strings.EqualFold(ct, "application/json") {
		return true
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}

// decodeText applies contentEncoding: utf-8 (also when absent), utf-16
// and utf-32 (little-endian, as .NET's Encoding.Unicode and UTF32).
func decodeText(b []byte, enc string) (string, bool) {
	switch strings.ToLower(enc) {
	case "", "utf-8":
		return strings.TrimPrefix(string(b), "\uFEFF"), true
	case "utf-16":
		u := make([]uint16, len(b)/2)
		for i := range u {
			u[i] = binary.LittleEndian.Uint16(b[2*i:])
		}
		return strings.TrimPrefix(string(utf16.Decode(u)), "\uFEFF"), true
	case "utf-32":
		r := make([]rune, len(b)/4)
		for i := range r {
			r[i] = rune(binary.LittleEndian.Uint32(b[4*i:]))
		}
		return strings.TrimPrefix(string(r), "\uFEFF"), true
	}
	return "", false
}
