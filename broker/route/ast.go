package route

import (
	"strings"
)

// kAny is the static type of a value only known at run time (a $body
// query). It never appears as a dynamic kind.
const kAny kind = 255

// node is a compiled condition. eval is pure; format prints a canonical,
// fully parenthesised form that parses back to the same tree.
type node interface {
	eval(c *evalCtx) value
	format(b *strings.Builder)
	static() kind // static type, kAny when unknown
	height() int  // tree height, bounded by maxHeight
}

type litNode struct {
	v    value
	text string // as written
}

func (n *litNode) eval(*evalCtx) value       { return n.v }
func (n *litNode) format(b *strings.Builder) { b.WriteString(n.text) }
func (n *litNode) height() int               { return 1 }

func (n *litNode) static() kind { return n.v.k }

// appNode is a bare identifier: an application property.
type appNode struct{ name string }

func (n *appNode) eval(c *evalCtx) value {
	if v, ok := lookup(c.m.App, n.name); ok {
		return strV(v)
	}
	return undef
}
func (n *appNode) format(b *strings.Builder) { b.WriteString(n.name) }
func (n *appNode) static() kind              { return kStr }
func (n *appNode) height() int               { return 1 }

// sysNode is $name or {$name}. Unescaped, an application property named
// "$name" wins; then a $body query; then the system property "name".
// Escaped, the application property is skipped.
type sysNode struct {
	text    string   // "$name" as written
	escaped bool     // written {$name}
	body    bodyPath // non-nil for $body.… queries
	never   bool     // contains [ or ] but is no body query: always undefined
}

func (n *sysNode) eval(c *evalCtx) value {
	if n.never {
		return undef
	}
	if !n.escaped {
		if v, ok := lookup(c.m.App, n.text); ok {
			return strV(v)
		}
	}
	if n.body != nil {
		return c.bodyValue(n.body)
	}
	if v, ok := lookup(c.m.Sys, n.text[1:]); ok {
		return strV(v)
	}
	return undef
}

func (n *sysNode) format(b *strings.Builder) {
	if n.escaped {
		b.WriteString("{" + n.text + "}")
		return
	}
	b.WriteString(n.text)
}

func (n *sysNode) static() kind {
	switch {
	case n.never:
		return kUndef
	case n.body != nil:
		return kAny
	}
	return kStr
}

func (n *sysNode) height() int { return 1 }

type unaryNode struct {
	op tokKind // tMinus or tNot
	x  node
	h  int
}

func (n *unaryNode) eval(c *evalCtx) value {
	v := n.x.eval(c)
	if n.op == tNot {
		return not(v)
	}
	if v.k != kNum {
		return undef
	}
	return numV(-v.n)
}

func (n *unaryNode) format(b *strings.Builder) {
	b.WriteString("(")
	b.WriteString(opText[n.op])
	b.WriteString(" ")
	n.x.format(b)
	b.WriteString(")")
}

func (n *unaryNode) static() kind {
	if n.op == tNot {
		return kBool
	}
	return kNum
}

func (n *unaryNode) height() int { return n.h }

type binNode struct {
	op   tokKind
	l, r node
	h    int
}

func (n *binNode) eval(c *evalCtx) value {
	l := n.l.eval(c)
	switch n.op {
	case tAnd:
		if l.k == kBool && !l.b {
			return falseV
		}
		return and(l, n.r.eval(c))
	case tOr:
		if l.isTrue() {
			return trueV
		}
		return or(l, n.r.eval(c))
	case tCoalesce:
		if l.k != kUndef {
			return l
		}
		return n.r.eval(c)
	}
	r := n.r.eval(c)
	switch n.op {
	case tConcat:
		if l.k != kStr || r.k != kStr {
			return undef
		}
		return strV(l.s + r.s)
	case tPlus, tMinus, tMul, tDiv, tMod:
		return arith(n.op, l, r)
	}
	return compare(n.op, l, r)
}

func (n *binNode) format(b *strings.Builder) {
	b.WriteString("(")
	n.l.format(b)
	b.WriteString(" " + opText[n.op] + " ")
	n.r.format(b)
	b.WriteString(")")
}

func (n *binNode) static() kind {
	switch n.op {
	case tCoalesce:
		if n.l.static() == n.r.static() {
			return n.l.static()
		}
		return kAny
	case tConcat:
		return kStr
	case tPlus, tMinus, tMul, tDiv, tMod:
		return kNum
	}
	return kBool
}

func (n *binNode) height() int { return n.h }

type callNode struct {
	fn   *builtin
	name string // as written
	args []node
	twin bodyPath // twin_change_includes path
	raw  string   // twin_change_includes argument text
	h    int
}

func (n *callNode) eval(c *evalCtx) value {
	if n.twin != nil {
		return c.twinIncludes(n.twin)
	}
	var buf [3]value
	args := buf[:0]
	for _, a := range n.args {
		args = append(args, a.eval(c))
	}
	return n.fn.fn(args)
}

func (n *callNode) format(b *strings.Builder) {
	b.WriteString(n.name + "(")
	if n.twin != nil {
		b.WriteString(n.raw)
	}
	for i, a := range n.args {
		if i > 0 {
			b.WriteString(", ")
		}
		a.format(b)
	}
	b.WriteString(")")
}

func (n *callNode) static() kind { return n.fn.ret }
func (n *callNode) height() int  { return n.h }

var opText = map[tokKind]string{
	tMinus: "-", tNot: "NOT", tPlus: "+", tMul: "*", tDiv: "/", tMod: "%",
	tConcat: "||", tLt: "<", tLe: "<=", tGt: ">", tGe: ">=", tEq: "=", tNe: "!=",
	tNe2: "<>", tAnd: "AND", tOr: "OR", tCoalesce: "??",
}

// lookup finds a property the way IoT Edge does: names are
// case-insensitive (its property dictionaries use OrdinalIgnoreCase).
func lookup(m map[string]string, name string) (string, bool) {
	if v, ok := m[name]; ok {
		return v, true
	}
	// Several keys may differ only in case: take the smallest, so the
	// result does not depend on map order.
	key, val, found := "", "", false
	for k, v := range m {
		if strings.EqualFold(k, name) && (!found || k < key) {
			key, val, found = k, v, true
		}
	}
	return val, found
}
