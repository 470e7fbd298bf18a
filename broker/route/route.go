package route

import (
	"fmt"
	"strings"
	"time"
)

const (
	// DefaultPriority is the priority of routes that set none (IoT Edge's
	// value); it ranks below 0–9. Its queue has no _Pri suffix.
	DefaultPriority = 2000000000
	// MaxRouteLen bounds a route's text (the whole $edgeHub desired
	// document is limited to 32 KB by IoT Hub anyway).
	MaxRouteLen = 32 << 10
)

// Route is one compiled IoT Edge route.
type Route struct {
	Name     string
	Text     string        // as written
	Priority int           // 0–9 (0 highest), or DefaultPriority
	TTL      time.Duration // 0: inherit the global time to live
	// MaxBytes caps the record bytes of the queue this route feeds (0: no
	// cap of its own); Overflow says what that queue does when full
	// (OverflowReject, OverflowDropOldest, "" inherits the global one).
	MaxBytes  int64
	Overflow  string
	Source    string // FROM path as written, e.g. /messages/modules/a/*
	Condition string // WHERE text as written, "" when absent
	Sink      Sink

	prefix string   // normalised source, see sourcePrefix; "" for a /topics/ source
	topic  []string // levels of the MQTT topic filter of a /topics/ source
	cond   node     // nil: no WHERE clause, always true
}

// Parse compiles route text. name only labels errors and the result.
func Parse(name, text string) (*Route, error) {
	p := &parser{name: name, lex: lexer{src: text}}
	if len(text) > MaxRouteLen {
		return nil, p.errAt(token{pos: MaxRouteLen, text: "…"}, "route text longer than %d bytes", MaxRouteLen)
	}
	p.advance()
	r, err := p.route()
	if err != nil {
		return nil, err
	}
	r.Name, r.Text, r.Priority = name, text, DefaultPriority
	return r, nil
}

// Matches reports whether m comes from the route's source and its
// condition evaluates to true (false and undefined do not fire).
func (r *Route) Matches(m *Message) bool {
	return r.matches(newCtx(m))
}

func (r *Route) matches(c *evalCtx) bool {
	// Free-topic messages are taken only by /topics/ routes (IoT Edge's
	// /messages/* and /* stay telemetry only), and those take nothing else.
	if fromTopic := c.m.Source.Kind == Topic; fromTopic != (r.topic != nil) {
		return false
	}
	if r.topic != nil {
		if !matchTopic(r.topic, c.m.Source.Topic) {
			return false
		}
	} else if !hasPrefixFold(c.src, r.prefix) {
		return false
	}
	return r.cond == nil || r.cond.eval(c).isTrue()
}

// String returns the route in canonical form: keywords upper case and the
// condition fully parenthesised. It parses back to an equivalent route.
func (r *Route) String() string {
	var b strings.Builder
	b.WriteString("FROM " + r.Source)
	if r.cond != nil {
		b.WriteString(" WHERE ")
		r.cond.format(&b)
	}
	b.WriteString(" INTO " + r.Sink.String())
	return b.String()
}

// twinSource reports whether the route reads twin-change notifications,
// the only source twin_change_includes is valid for.
func (r *Route) twinSource() bool {
	return strings.EqualFold(r.prefix, "/twinChangeNotifications/")
}

func (p *parser) route() (*Route, error) {
	if p.tok.kind == tSelect {
		p.advance()
		if err := p.expect(tMul, "expected * after SELECT"); err != nil {
			return nil, err
		}
	}
	if err := p.expect(tFrom, "expected FROM"); err != nil {
		return nil, err
	}
	r := &Route{}
	if err := p.source(r); err != nil {
		return nil, err
	}
	if p.tok.kind == tWhere {
		if err := p.where(r); err != nil {
			return nil, err
		}
	}
	if err := p.expect(tInto, "expected INTO"); err != nil {
		return nil, err
	}
	if err := p.sink(r); err != nil {
		return nil, err
	}
	if p.tok.kind != tEOF {
		return nil, p.errAt(p.tok, "unexpected text after the sink")
	}
	return r, nil
}

// source parses ('/' ('*' | name))+. Names may be any word-like token, so
// modules called "true" or "42" work; a trailing '/' is tolerated.
func (p *parser) source(r *Route) error {
	var b strings.Builder
	if p.tok.kind != tDiv {
		return p.errAt(p.tok, "expected a source path starting with /")
	}
	if topicSource(p.lex.src, p.tok.pos) {
		return p.topicSource(r)
	}
	for p.tok.kind == tDiv {
		b.WriteByte('/')
		p.advance()
		switch p.tok.kind {
		case tMul, tID, tInt, tHex, tReal, tTrue, tFalse, tNull, tUndefined, tAnd, tOr, tNot:
			b.WriteString(p.tok.text)
			p.advance()
		case tWhere, tInto:
			if b.Len() > 1 {
				continue
			}
			return p.errAt(p.tok, "expected a source path segment or *")
		default:
			return p.errAt(p.tok, "expected a source path segment or *")
		}
	}
	r.Source = b.String()
	r.prefix = sourcePrefix(r.Source)
	return nil
}

// topicSource parses /topics/<MQTT topic filter>. The filter is read raw
// up to the next white space, as MQTT topics use characters the route
// lexer splits on ('+', '$', '-').
func (p *parser) topicSource(r *Route) error {
	start := p.tok.pos + len(topicsPrefix)
	if start > len(p.lex.src) || p.lex.src[start-1] != '/' {
		start-- // "/topics" alone: topicFilter reports the missing filter
	}
	levels, end, msg, at := topicFilter(p.lex.src, start)
	if msg != "" {
		t := token{pos: at, text: p.lex.src[at:end]}
		return p.errAt(t, "%s", msg)
	}
	r.Source = "/topics/" + p.lex.src[start:end]
	r.topic = levels
	p.lex.pos = end
	p.advance()
	return nil
}

func (p *parser) where(r *Route) error {
	start := p.tok.pos + len(p.tok.text)
	p.lex.comments = true
	p.twinOK = r.twinSource()
	p.advance()
	cond, err := p.expr(1)
	if err != nil {
		return err
	}
	r.cond = cond
	r.Condition = strings.TrimSpace(p.lex.src[start:p.tok.pos])
	p.lex.comments = false
	return nil
}

func (p *parser) sink(r *Route) error {
	t := p.tok
	p.advance()
	switch {
	case t.kind == tSysProp && strings.EqualFold(t.text, "$upstream"):
		r.Sink = Sink{Upstream: true}
		return nil
	case t.kind == tID && strings.EqualFold(t.text, "BrokeredEndpoint"):
		return p.brokered(r)
	case t.kind == tSysProp, t.kind == tID:
		return p.sinkErr(t, "unknown endpoint %q: want $upstream or BrokeredEndpoint(\"/modules/{module}/inputs/{input}\")", t.text)
	}
	return p.sinkErr(t, "expected $upstream or BrokeredEndpoint(\"/modules/{module}/inputs/{input}\")")
}

func (p *parser) brokered(r *Route) error {
	if err := p.expect(tLParen, "expected ( after BrokeredEndpoint"); err != nil {
		return err
	}
	t := p.tok
	if t.kind != tString {
		return p.sinkErr(t, "BrokeredEndpoint needs a quoted path")
	}
	path, err := p.unquote(t)
	if err != nil {
		return err
	}
	seg := strings.Split(path, "/")
	if len(seg) != 5 || seg[0] != "" || !strings.EqualFold(seg[1], "modules") ||
		!strings.EqualFold(seg[3], "inputs") || seg[2] == "" || seg[4] == "" {
		return p.sinkErr(t, "BrokeredEndpoint path %q: want exactly /modules/{module}/inputs/{input}", path)
	}
	r.Sink = Sink{Module: seg[2], Input: seg[4]}
	p.advance()
	return p.expect(tRParen, "expected ) after the BrokeredEndpoint path")
}

func (p *parser) sinkErr(t token, format string, args ...any) error {
	e := p.errAt(t, format, args...)
	e.kind = ErrSink
	return e
}

// errAt builds a SyntaxError at token t.
func (p *parser) errAt(t token, format string, args ...any) *SyntaxError {
	near := t.text
	if len(near) > 24 {
		near = near[:24] + "…"
	}
	return &SyntaxError{Route: p.name, Text: p.lex.src, Pos: t.pos, Near: near, Msg: fmt.Sprintf(format, args...)}
}
