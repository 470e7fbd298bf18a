package route

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

const (
	// DefaultTTL is the global time to live when storeAndForwardConfiguration
	// sets none (IoT Edge's documented default).
	DefaultTTL = 7200 * time.Second
	maxTTLSecs = math.MaxUint32
)

// Config is the routing part of the $edgeHub desired properties.
type Config struct {
	SchemaVersion string
	Routes        []*Route      // sorted by name
	TTL           time.Duration // storeAndForwardConfiguration.timeToLiveSecs; 0: never expires
	// MaxBytes caps all queues together (storeAndForwardConfiguration.maxBytes;
	// 0: not set, the edge's --max-queue-bytes applies); Overflow is the
	// default overflow policy of every queue ("" : not set).
	MaxBytes int64
	Overflow string
}

// Overflow policies of a full queue.
const (
	OverflowReject     = "reject"      // refuse the new message (MQTT 5 0x97, 3.1.1 disconnect)
	OverflowDropOldest = "drop-oldest" // delete the queue's oldest messages to make room
)

// Target is one endpoint a message goes to, with the priority and time to
// live of the route that won it.
type Target struct {
	Sink
	Priority int           // 0–9 or DefaultPriority
	TTL      time.Duration // route TTL, else the global one; 0: never expires
	Route    string        // name of the winning route
	MaxBytes int64         // the winning route's queue cap; 0: none of its own
	Overflow string        // the winning route's policy, else the global one; "" if neither
}

// Queue names the durable queue: the endpoint id, plus "_Pri<p>" for an
// explicit priority (IoT Edge's MessageQueueIdHelper convention).
func (t Target) Queue() string {
	if t.Priority == DefaultPriority {
		return t.Endpoint()
	}
	return t.Endpoint() + "_Pri" + strconv.Itoa(t.Priority)
}

// DefaultConfig is what runs before any deployment: everything upstream.
func DefaultConfig() *Config {
	r, err := Parse("default", "FROM /messages/* INTO $upstream")
	if err != nil {
		panic(err) // broken invariant: the text is constant
	}
	return &Config{SchemaVersion: "1.1", Routes: []*Route{r}, TTL: DefaultTTL}
}

// Match returns one Target per endpoint the message is routed to, ordered
// by priority then endpoint id; empty when no route fires. When several
// routes reach one endpoint the highest priority (lowest number) wins,
// with that route's TTL; between equal priorities the longest TTL wins.
func (c *Config) Match(m *Message) []Target {
	ctx := newCtx(m)
	var out []Target
	for _, r := range c.Routes {
		if !r.matches(ctx) {
			continue
		}
		t := Target{Sink: r.Sink, Priority: r.Priority, TTL: c.ttl(r), Route: r.Name, MaxBytes: r.MaxBytes, Overflow: r.Overflow}
		if t.Overflow == "" {
			t.Overflow = c.Overflow
		}
		out = merge(out, t)
	}
	if len(out) < 2 {
		return out
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Priority != out[j].Priority {
			return out[i].Priority < out[j].Priority
		}
		return out[i].Endpoint() < out[j].Endpoint()
	})
	return out
}

func (c *Config) ttl(r *Route) time.Duration {
	if r.TTL > 0 {
		return r.TTL
	}
	return c.TTL
}

func merge(out []Target, t Target) []Target {
	for i, o := range out {
		if o.Sink != t.Sink {
			continue
		}
		if t.Priority < o.Priority || (t.Priority == o.Priority && longer(t.TTL, o.TTL)) {
			out[i] = t
		}
		return out
	}
	return append(out, t)
}

// longer compares TTLs where 0 means forever.
func longer(a, b time.Duration) bool {
	return b != 0 && (a == 0 || a > b)
}

// ParseConfig reads the $edgeHub desired properties. Routes may be strings
// or objects {"route","priority","timeToLiveSecs","maxBytes","overflow"};
// storeAndForwardConfiguration takes timeToLiveSecs, maxBytes (all queues
// together) and overflow (the default policy). Field names are
// case-insensitive and unknown fields ignored, as in IoT Edge. A null
// route is skipped (a deleted key in a merged patch). All problems are
// reported together, each naming its route.
func ParseConfig(desired []byte) (*Config, error) {
	var doc struct {
		SchemaVersion                *json.RawMessage
		Routes                       *map[string]json.RawMessage
		StoreAndForwardConfiguration *struct {
			TimeToLiveSecs *json.RawMessage
			MaxBytes       *json.RawMessage
			Overflow       *json.RawMessage
		}
	}
	if err := json.Unmarshal(desired, &doc); err != nil {
		return nil, fmt.Errorf("%w: $edgeHub desired properties: %w", ErrConfig, err)
	}
	cfg := &Config{TTL: DefaultTTL}
	var errs []error
	if err := cfg.schema(doc.SchemaVersion); err != nil {
		errs = append(errs, err)
	}
	if s := doc.StoreAndForwardConfiguration; s != nil && s.TimeToLiveSecs != nil {
		ttl, err := globalTTL(*s.TimeToLiveSecs)
		cfg.TTL = ttl
		errs = append(errs, err)
	}
	if s := doc.StoreAndForwardConfiguration; s != nil {
		var err1, err2 error
		cfg.MaxBytes, err1 = maxBytes("storeAndForwardConfiguration.maxBytes", s.MaxBytes)
		cfg.Overflow, err2 = overflow("storeAndForwardConfiguration.overflow", s.Overflow)
		errs = append(errs, err1, err2)
	}
	if doc.Routes == nil {
		errs = append(errs, fmt.Errorf("%w: routes: missing", ErrConfig))
	} else {
		errs = append(errs, cfg.routes(*doc.Routes)...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return cfg, nil
}

// schema accepts 1.0 (string routes), 1.1 (object routes), and 1.2/1.3
// whose additions (mqttBroker, integrity) are not about routing.
func (c *Config) schema(raw *json.RawMessage) error {
	if raw == nil {
		return nil
	}
	var v string
	if err := json.Unmarshal(*raw, &v); err != nil {
		return fmt.Errorf("%w: schemaVersion %s: want a string such as \"1.1\"", ErrSchema, *raw)
	}
	switch v {
	case "1.0", "1.1", "1.2", "1.3":
		c.SchemaVersion = v
		return nil
	}
	return fmt.Errorf("%w: schemaVersion %q: want 1.0, 1.1, 1.2 or 1.3", ErrSchema, v)
}

func globalTTL(raw json.RawMessage) (time.Duration, error) {
	n, ok := integer(raw)
	switch {
	case ok && (n == -1 || n == 0):
		return 0, nil // never expires
	case ok && n > 0 && n <= maxTTLSecs:
		return time.Duration(n) * time.Second, nil
	}
	return DefaultTTL, fmt.Errorf("%w: storeAndForwardConfiguration.timeToLiveSecs %s: want an integer 0..%d, or -1 for no expiry",
		ErrTTL, raw, int64(maxTTLSecs))
}

// integer decodes a JSON number with an integral value.
func integer(raw json.RawMessage) (int64, bool) {
	var f float64
	if json.Unmarshal(raw, &f) != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int64(f), true
}

func (c *Config) routes(m map[string]json.RawMessage) []error {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	var errs []error
	for _, n := range names {
		raw := bytes.TrimSpace(m[n])
		if string(raw) == "null" {
			continue
		}
		r, err := c.route(n, raw)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.Routes = append(c.Routes, r)
	}
	return errs
}

func (c *Config) route(name string, raw json.RawMessage) (*Route, error) {
	if name == "" || strings.ContainsAny(name, ".$# ") {
		return nil, fmt.Errorf("%w: route %q: names must be non-empty without '.', '$', '#' or spaces", ErrName, name)
	}
	if len(raw) > 0 && raw[0] == '"' {
		var text string
		if err := json.Unmarshal(raw, &text); err != nil {
			return nil, fmt.Errorf("%w: route %q: %w", ErrConfig, name, err)
		}
		return Parse(name, text)
	}
	if len(raw) == 0 || raw[0] != '{' {
		return nil, fmt.Errorf("%w: route %q: want a string or an object {\"route\",\"priority\",\"timeToLiveSecs\",\"maxBytes\",\"overflow\"}, have %s", ErrConfig, name, raw)
	}
	if c.SchemaVersion == "1.0" {
		return nil, fmt.Errorf("%w: route %q: object routes need schemaVersion 1.1 or later", ErrSchema, name)
	}
	return objectRoute(name, raw)
}

func objectRoute(name string, raw json.RawMessage) (*Route, error) {
	var spec struct {
		Route          *string
		Priority       *json.RawMessage
		TimeToLiveSecs *json.RawMessage
		MaxBytes       *json.RawMessage
		Overflow       *json.RawMessage
	}
	if err := json.Unmarshal(raw, &spec); err != nil {
		return nil, fmt.Errorf("%w: route %q: %w", ErrConfig, name, err)
	}
	if spec.Route == nil {
		return nil, fmt.Errorf("%w: route %q: object route without \"route\" text", ErrConfig, name)
	}
	r, err := Parse(name, *spec.Route)
	if err != nil {
		return nil, err
	}
	if p := spec.Priority; p != nil && string(*p) != "null" {
		n, ok := integer(*p)
		if !ok || n < 0 || n > 9 {
			return nil, fmt.Errorf("%w: route %q: priority %s: want an integer 0 (highest) to 9", ErrPriority, name, *p)
		}
		r.Priority = int(n)
	}
	if t := spec.TimeToLiveSecs; t != nil && string(*t) != "null" {
		n, ok := integer(*t)
		if !ok || n < 0 || n > maxTTLSecs {
			return nil, fmt.Errorf("%w: route %q: timeToLiveSecs %s: want an integer 0..%d (0 inherits the global value)",
				ErrTTL, name, *t, int64(maxTTLSecs))
		}
		r.TTL = time.Duration(n) * time.Second
	}
	if r.MaxBytes, err = maxBytes(fmt.Sprintf("route %q: maxBytes", name), spec.MaxBytes); err != nil {
		return nil, err
	}
	if r.Overflow, err = overflow(fmt.Sprintf("route %q: overflow", name), spec.Overflow); err != nil {
		return nil, err
	}
	return r, nil
}

// maxBytes reads a byte cap: an integer number of bytes, 0 or null for none.
func maxBytes(what string, raw *json.RawMessage) (int64, error) {
	if raw == nil || string(*raw) == "null" {
		return 0, nil
	}
	n, ok := integer(*raw)
	if !ok || n < 0 {
		return 0, fmt.Errorf("%w: %s %s: want a whole number of bytes, 0 for no cap", ErrCap, what, *raw)
	}
	return n, nil
}

// overflow reads "reject" or "drop-oldest"; null or absent is "".
func overflow(what string, raw *json.RawMessage) (string, error) {
	if raw == nil || string(*raw) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(*raw, &s) == nil && (s == OverflowReject || s == OverflowDropOldest) {
		return s, nil
	}
	return "", fmt.Errorf("%w: %s %s: want \"reject\" or \"drop-oldest\"", ErrCap, what, *raw)
}
