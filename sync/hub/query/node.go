package query

import (
	"strconv"
	"strings"
)

// node is an expression of a condition. eval returns its value and whether
// it is defined; a condition holds when its value is the bool true.
type node interface {
	eval(doc map[string]any) (any, bool)
	// format writes the canonical text; prec is the precedence the
	// context requires (the node adds parentheses when it binds looser).
	format(b *strings.Builder, prec int)
}

// Precedences, loosest first.
const (
	precOr = iota + 1
	precAnd
	precNot
	precCmp
	precPrimary
)

// seg is one step of a property path: an object key or an array index.
type seg struct {
	key   string
	index int
	isIdx bool
}

// pathNode is a property path such as properties.reported['odd key'].
type pathNode struct {
	pre  []string // collection prefix as written (devices.jobs.), stripped
	segs []seg
}

func (p *pathNode) eval(doc map[string]any) (any, bool) {
	var v any = doc
	for _, s := range p.segs {
		if s.isIdx {
			a, ok := v.([]any)
			if !ok || s.index >= len(a) {
				return nil, false
			}
			v = a[s.index]
			continue
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[s.key]; !ok {
			return nil, false
		}
	}
	return v, true
}

func (p *pathNode) format(b *strings.Builder, _ int) {
	b.WriteString(strings.Join(p.pre, "."))
	for i, s := range p.segs {
		inner := i > 0 || len(p.pre) > 0
		switch {
		case s.isIdx:
			b.WriteString("[" + strconv.Itoa(s.index) + "]")
		case isIdent(s.key) && (inner || !reserved[strings.ToUpper(s.key)]):
			if inner {
				b.WriteByte('.')
			}
			b.WriteString(s.key)
		default:
			b.WriteString("[" + quote(s.key) + "]")
		}
	}
}

// name is the field a projection of the path is named by: its last key.
func (p *pathNode) name() string {
	if s := p.segs[len(p.segs)-1]; !s.isIdx {
		return s.key
	}
	return ""
}

func (p *pathNode) equal(q *pathNode) bool {
	if len(p.segs) != len(q.segs) {
		return false
	}
	for i := range p.segs {
		if p.segs[i] != q.segs[i] {
			return false
		}
	}
	return true
}

func isIdent(s string) bool {
	if s == "" || !identStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !identPart(s[i]) {
			return false
		}
	}
	return true
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// litNode is a constant: string, float64, bool or nil (null).
type litNode struct{ v any }

func (l *litNode) eval(map[string]any) (any, bool) { return l.v, true }

func (l *litNode) format(b *strings.Builder, _ int) { b.WriteString(formatLit(l.v)) }

func formatLit(v any) string {
	switch v := v.(type) {
	case string:
		return quote(v)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	}
	return "null"
}

// logicNode is AND or OR with Kleene logic: false AND undefined is false,
// true OR undefined is true, otherwise undefined spreads.
type logicNode struct {
	or   bool
	l, r node
}

func (n *logicNode) eval(doc map[string]any) (any, bool) {
	l, lok := truth(n.l.eval(doc))
	if lok && l == n.or { // false AND x, true OR x
		return l, true
	}
	r, rok := truth(n.r.eval(doc))
	if rok && r == n.or {
		return r, true
	}
	if lok && rok {
		return l, true // both !n.or
	}
	return nil, false
}

func (n *logicNode) format(b *strings.Builder, prec int) {
	op, my := " AND ", precAnd
	if n.or {
		op, my = " OR ", precOr
	}
	paren(b, prec > my, func() {
		n.l.format(b, my)
		b.WriteString(op)
		n.r.format(b, my+1)
	})
}

// truth reads a value as a bool; anything else is undefined.
func truth(v any, ok bool) (bool, bool) {
	t, isBool := v.(bool)
	return t, ok && isBool
}

func paren(b *strings.Builder, need bool, f func()) {
	if need {
		b.WriteByte('(')
	}
	f()
	if need {
		b.WriteByte(')')
	}
}

// notNode negates a bool; NOT undefined is undefined.
type notNode struct{ x node }

func (n *notNode) eval(doc map[string]any) (any, bool) {
	t, ok := truth(n.x.eval(doc))
	if !ok {
		return nil, false
	}
	return !t, true
}

func (n *notNode) format(b *strings.Builder, prec int) {
	paren(b, prec > precNot, func() {
		b.WriteString("NOT ")
		n.x.format(b, precNot)
	})
}

// cmpNode is a comparison: = != <> < > <= >=.
type cmpNode struct {
	op   string
	l, r node
}

func (n *cmpNode) eval(doc map[string]any) (any, bool) {
	a, aok := n.l.eval(doc)
	if !aok {
		return nil, false
	}
	c, cok := n.r.eval(doc)
	return compare(n.op, a, aok, c, cok)
}

func (n *cmpNode) format(b *strings.Builder, prec int) {
	paren(b, prec > precCmp, func() {
		n.l.format(b, precPrimary)
		b.WriteString(" " + n.op + " ")
		n.r.format(b, precPrimary)
	})
}

// inNode is x IN [...] or x NIN [...] over constants. The set is keyed
// by canonical encoding so a long list costs one map lookup.
type inNode struct {
	x    node
	list []any
	set  map[string]bool
	nin  bool
}

func (n *inNode) eval(doc map[string]any) (any, bool) {
	v, ok := n.x.eval(doc)
	if !ok {
		return nil, false
	}
	k := kindOf(v)
	if k == kUndefined || k == kArray || k == kObject {
		return nil, false
	}
	return n.set[canonString(v, true)] != n.nin, true
}

func (n *inNode) format(b *strings.Builder, prec int) {
	paren(b, prec > precCmp, func() {
		n.x.format(b, precPrimary)
		if n.nin {
			b.WriteString(" NIN [")
		} else {
			b.WriteString(" IN [")
		}
		for i, v := range n.list {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(formatLit(v))
		}
		b.WriteByte(']')
	})
}

// callNode is a function call.
type callNode struct {
	fn   *function
	args []node
}

func (n *callNode) eval(doc map[string]any) (any, bool) { return n.fn.eval(doc, n.args) }

func (n *callNode) format(b *strings.Builder, _ int) {
	b.WriteString(n.fn.name + "(")
	for i, a := range n.args {
		if i > 0 {
			b.WriteString(", ")
		}
		a.format(b, precOr)
	}
	b.WriteByte(')')
}
