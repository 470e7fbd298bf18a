package egress

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/outpost-edge/outpost/broker/route"
)

// Endpoint types.
const (
	TypeNATS    = "nats"
	TypeKafka   = "kafka"
	TypeWebhook = "webhook"
)

// Config is a routes file: where events go (endpoints) and which (routes).
type Config struct {
	Endpoints []EndpointConfig `toml:"endpoint"`
	Routes    []RouteConfig    `toml:"route"`
}

// EndpointConfig is one [[endpoint]] table.
type EndpointConfig struct {
	Name string `toml:"name"`
	Type string `toml:"type"`
	// URL: the NATS server (nats://, tls://) or the webhook (https://, or
	// http:// to a loopback host).
	URL string `toml:"url"`
	// NATS: the subject a JetStream stream captures, and an optional
	// credentials file (a path relative to the routes file).
	Subject     string `toml:"subject"`
	Credentials string `toml:"credentials"`
	// Kafka: seed brokers (host:port) and the topic.
	Brokers []string `toml:"brokers"`
	Topic   string   `toml:"topic"`
	// Webhook: an extra CA (PEM file, relative to the routes file) trusted
	// besides the system's roots, and headers sent with every request.
	CA      string            `toml:"ca"`
	Headers map[string]string `toml:"headers"`
}

// RouteConfig is one [[route]] table: FROM <source> [WHERE <condition>]
// INTO <endpoint name>, the source and condition in broker/route's
// language.
type RouteConfig struct {
	Name  string `toml:"name"`
	Query string `toml:"query"`
}

// Route is a compiled route: its condition is broker/route's, its sink an
// endpoint of the routes file.
type Route struct {
	Name     string
	Endpoint string
	r        *route.Route
}

// ConfigError is what ParseConfig refuses: always one line, naming the
// file, the line when the TOML parser knows it, and the endpoint or route.
type ConfigError struct {
	File string
	Line int // 0: unknown
	Msg  string
	Err  error // wrapped: route.ErrSyntax for a bad condition, …
}

func (e *ConfigError) Error() string {
	where := e.File
	if e.Line > 0 {
		where = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	return oneLine(where + ": " + e.Msg)
}

func (e *ConfigError) Unwrap() error { return e.Err }

func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	// intoRE splits a query at its last INTO: the endpoint is a name, so
	// an INTO inside the condition's strings cannot end the query.
	intoRE = regexp.MustCompile(`(?is)^(.*\S)\s+INTO\s+(\S+)\s*$`)
)

// ParseConfig reads a routes file's text; file names it in errors.
func ParseConfig(file string, data []byte) (*Config, []Route, error) {
	var c Config
	md, err := toml.Decode(string(data), &c)
	if err != nil {
		e := &ConfigError{File: file, Msg: err.Error() + " (see docs/operations.md, Routing events)", Err: err}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			e.Line, e.Msg = pe.Position.Line, pe.Message
			if pe.LastKey != "" {
				e.Msg = fmt.Sprintf("%s (key %s)", pe.Message, pe.LastKey)
			}
		}
		return nil, nil, e
	}
	if keys := md.Undecoded(); len(keys) > 0 {
		return nil, nil, &ConfigError{File: file, Msg: fmt.Sprintf("unknown key %s: an endpoint has name, type, url, subject, credentials, brokers, topic, ca and headers; a route has name and query", keys[0])}
	}
	fail := func(format string, args ...any) (*Config, []Route, error) {
		return nil, nil, &ConfigError{File: file, Msg: fmt.Sprintf(format, args...)}
	}
	if len(c.Endpoints) == 0 || len(c.Routes) == 0 {
		return fail("no [[endpoint]] or no [[route]]: a routes file needs at least one of each")
	}
	names := map[string]bool{}
	for i, ep := range c.Endpoints {
		if err := ep.check(); err != nil {
			return fail("endpoint %d %q: %v", i+1, ep.Name, err)
		}
		if names[ep.Name] {
			return fail("endpoint %d: the name %q is taken by an earlier endpoint: endpoint names are unique", i+1, ep.Name)
		}
		names[ep.Name] = true
	}
	routes, err := compileRoutes(c.Routes, names)
	if err != nil {
		return nil, nil, &ConfigError{File: file, Msg: err.Error(), Err: err}
	}
	return &c, routes, nil
}

func compileRoutes(rcs []RouteConfig, endpoints map[string]bool) ([]Route, error) {
	var out []Route
	seen := map[string]bool{}
	for i, rc := range rcs {
		if !nameRE.MatchString(rc.Name) {
			return nil, fmt.Errorf("route %d: name %q: want 1–64 letters, digits, - or _", i+1, rc.Name)
		}
		if seen[rc.Name] {
			return nil, fmt.Errorf("route %d: the name %q is taken by an earlier route: route names are unique", i+1, rc.Name)
		}
		seen[rc.Name] = true
		r, err := compileRoute(rc.Name, rc.Query)
		if err != nil {
			return nil, err
		}
		if !endpoints[r.Endpoint] {
			return nil, fmt.Errorf("route %q: INTO %s: no endpoint of that name in this file (add an [[endpoint]] with name = %q)", rc.Name, r.Endpoint, r.Endpoint)
		}
		out = append(out, r)
	}
	return out, nil
}

// compileRoute parses FROM … [WHERE …] INTO <endpoint>: the frame and
// condition with broker/route (given INTO $upstream, so offsets in its
// errors are offsets in the query as written), the endpoint here.
func compileRoute(name, query string) (Route, error) {
	m := intoRE.FindStringSubmatch(query)
	if m == nil {
		return Route{}, fmt.Errorf("route %q: query %q: want FROM /messages/… [WHERE <condition>] INTO <endpoint name>", name, query)
	}
	if !nameRE.MatchString(m[2]) {
		return Route{}, fmt.Errorf("route %q: INTO %q: an endpoint name has 1–64 letters, digits, - or _", name, m[2])
	}
	r, err := route.Parse(name, m[1]+" INTO $upstream")
	if err != nil {
		return Route{}, err // route "name": at offset N near "…": what
	}
	src := strings.ToLower(r.Source)
	if !strings.HasPrefix(src, "/messages") && src != "/*" && src != "/" {
		return Route{}, fmt.Errorf("route %q: FROM %s: the hub routes device-to-cloud events: FROM /messages/… (or /*)", name, r.Source)
	}
	return Route{Name: name, Endpoint: m[2], r: r}, nil
}

func (ep EndpointConfig) check() error {
	if !nameRE.MatchString(ep.Name) {
		return fmt.Errorf("name: want 1–64 letters, digits, - or _ (it labels metrics and the cursor)")
	}
	foreign := func(field, set, owner string) error {
		if set != "" {
			return fmt.Errorf("%s is for %s endpoints, this one is %s", field, owner, ep.Type)
		}
		return nil
	}
	switch ep.Type {
	case TypeNATS:
		if err := errors.Join(foreign("topic", ep.Topic, TypeKafka), foreign("ca", ep.CA, TypeWebhook), foreign("brokers", strings.Join(ep.Brokers, ","), TypeKafka), foreign("headers", strings.Repeat("x", len(ep.Headers)), TypeWebhook)); err != nil {
			return err
		}
		return checkNATS(ep)
	case TypeKafka:
		if err := errors.Join(foreign("url", ep.URL, "nats and webhook"), foreign("subject", ep.Subject, TypeNATS), foreign("credentials", ep.Credentials, TypeNATS), foreign("ca", ep.CA, TypeWebhook), foreign("headers", strings.Repeat("x", len(ep.Headers)), TypeWebhook)); err != nil {
			return err
		}
		return checkKafka(ep)
	case TypeWebhook:
		if err := errors.Join(foreign("subject", ep.Subject, TypeNATS), foreign("credentials", ep.Credentials, TypeNATS), foreign("topic", ep.Topic, TypeKafka), foreign("brokers", strings.Join(ep.Brokers, ","), TypeKafka)); err != nil {
			return err
		}
		return checkWebhook(ep)
	}
	return fmt.Errorf("type %q: want nats, kafka or webhook", ep.Type)
}

func checkNATS(ep EndpointConfig) error {
	u, err := url.Parse(ep.URL)
	if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" {
		return fmt.Errorf("url %q: want nats://host:port or tls://host:port", ep.URL)
	}
	if ep.Subject == "" || strings.ContainsAny(ep.Subject, "*> \t") {
		return fmt.Errorf("subject %q: want a subject without wildcards, e.g. outpost.events", ep.Subject)
	}
	return nil
}

func checkKafka(ep EndpointConfig) error {
	if len(ep.Brokers) == 0 {
		return errors.New(`brokers: want at least one host:port, e.g. brokers = ["127.0.0.1:9092"]`)
	}
	for _, b := range ep.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return fmt.Errorf("broker %q: want host:port", b)
		}
	}
	if ep.Topic == "" {
		return errors.New("topic: required")
	}
	return nil
}

func checkWebhook(ep EndpointConfig) error {
	u, err := url.Parse(ep.URL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("url %q: want https://host/path", ep.URL)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && loopbackHost(u.Hostname()):
	case u.Scheme == "http":
		return fmt.Errorf("url %q: plain http only to a loopback host; events and headers travel over https elsewhere", ep.URL)
	default:
		return fmt.Errorf("url %q: want https://", ep.URL)
	}
	for k, v := range ep.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n\t") {
			return fmt.Errorf("header name %q is not a valid HTTP header name", k)
		}
		if strings.ContainsAny(v, "\r\n") {
			return fmt.Errorf("header %s: a value cannot hold a line break", k)
		}
	}
	return nil
}

// loopbackHost reports whether host is localhost or a loopback address,
// decided without DNS.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
