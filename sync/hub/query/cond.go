package query

import (
	"math"
	"strings"
)

// Conditions, loosest first: OR, AND, NOT, comparisons and IN, primaries.

func (p *parser) or() (node, error) {
	l, err := p.and()
	for err == nil && p.accept("OR") {
		var r node
		if r, err = p.and(); err == nil {
			l = &logicNode{or: true, l: l, r: r}
		}
	}
	return l, err
}

func (p *parser) and() (node, error) {
	l, err := p.not()
	for err == nil && p.accept("AND") {
		var r node
		if r, err = p.not(); err == nil {
			l = &logicNode{l: l, r: r}
		}
	}
	return l, err
}

func (p *parser) not() (node, error) {
	t := p.peek()
	if !p.accept("NOT") {
		return p.cmp()
	}
	if err := p.enter(t); err != nil {
		return nil, err
	}
	x, err := p.not()
	p.depth--
	if err != nil {
		return nil, err
	}
	return &notNode{x: x}, nil
}

var cmpOps = []string{"=", "!=", "<>", "<", ">", "<=", ">="}

func (p *parser) cmp() (node, error) {
	l, err := p.primary()
	if err != nil {
		return nil, err
	}
	t := p.peek()
	for _, op := range cmpOps {
		if t.is(op) {
			p.i++
			r, err := p.primary()
			if err != nil {
				return nil, err
			}
			return &cmpNode{op: op, l: l, r: r}, nil
		}
	}
	if t.is("IN") || t.is("NIN") {
		p.i++
		return p.inList(l, t.is("NIN"))
	}
	return l, nil
}

func (p *parser) inList(x node, nin bool) (node, error) {
	if err := p.expect("[", "expected [ after IN or NIN: tags.region IN ['US', 'EU']"); err != nil {
		return nil, err
	}
	n := &inNode{x: x, nin: nin, set: map[string]bool{}}
	if p.accept("]") {
		return n, nil
	}
	for {
		t := p.peek()
		v, ok := p.literal()
		if !ok {
			return nil, errAt(t, "an IN list holds constants: strings, numbers, true, false or null")
		}
		if len(n.list) == MaxInItems {
			return nil, errAt(t, "an IN list holds at most %d items; split the query", MaxInItems)
		}
		n.list = append(n.list, v)
		n.set[canonString(v, true)] = true
		if p.accept("]") {
			return n, nil
		}
		if err := p.expect(",", "expected ',' or ] in the IN list"); err != nil {
			return nil, err
		}
	}
}

// literal consumes a constant when the next token is one.
func (p *parser) literal() (any, bool) {
	t := p.peek()
	var v any
	switch {
	case t.kind == tString:
		v = t.val
	case t.kind == tNumber:
		v = t.num
	case t.is("true"):
		v = true
	case t.is("false"):
		v = false
	case t.is("null"):
		v = nil
	default:
		return nil, false
	}
	p.i++
	return v, true
}

func (p *parser) primary() (node, error) {
	t := p.peek()
	if v, ok := p.literal(); ok {
		return &litNode{v: v}, nil
	}
	switch {
	case t.is("("):
		p.i++
		if err := p.enter(t); err != nil {
			return nil, err
		}
		n, err := p.or()
		p.depth--
		if err != nil {
			return nil, err
		}
		if err := p.expect(")", "expected ) to close the ( at %d, or AND, OR", t.pos); err != nil {
			return nil, err
		}
		return n, nil
	case t.kind == tIdent && p.peek2().is("("):
		return p.call()
	}
	return p.path("a property path, a constant, a function or (")
}

func (p *parser) call() (node, error) {
	t := p.next()
	p.i++ // (
	fn := functions[strings.ToUpper(t.text)]
	if fn == nil {
		return nil, errAt(t, "unknown function %s; the functions are %s", t.text, functionNames())
	}
	if err := p.enter(t); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	n := &callNode{fn: fn}
	for !p.peek().is(")") || len(n.args) == 0 && fn.arity > 0 {
		if len(n.args) > 0 {
			if err := p.expect(",", "expected ',' or ) in the arguments of %s", fn.name); err != nil {
				return nil, err
			}
		}
		a, err := p.or()
		if err != nil {
			return nil, err
		}
		n.args = append(n.args, a)
	}
	if len(n.args) != fn.arity {
		return nil, errAt(p.peek(), "%s takes %d argument(s), not %d", fn.name, fn.arity, len(n.args))
	}
	p.i++ // )
	return n, nil
}

// path parses a property path; what names the context for the error.
func (p *parser) path(what string) (*pathNode, error) {
	t := p.peek()
	n := &pathNode{}
	switch {
	case t.kind == tIdent && !t.reserved():
		p.i++
		n.segs = append(n.segs, seg{key: t.text})
	case t.is("["):
		if err := p.bracket(n); err != nil {
			return nil, err
		}
	case t.reserved():
		return nil, errAt(t, "expected %s, found the keyword %s (a property with that name is written ['%s'])", what, strings.ToUpper(t.text), t.text)
	default:
		return nil, errAt(t, "expected %s", what)
	}
	for {
		switch {
		case p.accept("."):
			k := p.next()
			if k.kind != tIdent {
				return nil, errAt(k, "expected a property name after '.'; write ['key'] for a key that is not a name")
			}
			n.segs = append(n.segs, seg{key: k.text})
		case p.peek().is("["):
			if err := p.bracket(n); err != nil {
				return nil, err
			}
		default:
			p.strip(n)
			return n, nil
		}
	}
}

// bracket parses ['key'] or [index].
func (p *parser) bracket(n *pathNode) error {
	p.i++ // [
	t := p.next()
	switch {
	case t.kind == tString:
		n.segs = append(n.segs, seg{key: t.val})
	case t.kind == tNumber && t.num >= 0 && t.num <= math.MaxInt32 && t.num == math.Trunc(t.num) && !strings.ContainsAny(t.text, ".eE-"):
		n.segs = append(n.segs, seg{index: int(t.num), isIdx: true})
	default:
		return errAt(t, "expected a quoted key or an array index in [ ]: ['odd key'] or [0]")
	}
	return p.expect("]", "expected ] after the key")
}

// strip removes the collection's name from the front of a path in a query
// (devices.jobs.status reads status), keeping it for String.
func (p *parser) strip(n *pathNode) {
	if p.prefix == nil || n.pre != nil || len(n.segs) <= len(p.prefix) {
		return
	}
	for i, w := range p.prefix {
		if s := n.segs[i]; s.isIdx || !isIdent(s.key) || !strings.EqualFold(s.key, w) {
			return
		}
	}
	for _, s := range n.segs[:len(p.prefix)] {
		n.pre = append(n.pre, s.key)
	}
	n.segs = n.segs[len(p.prefix):]
}
