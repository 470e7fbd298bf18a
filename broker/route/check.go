package route

import (
	"strings"
	"unicode"
)

// concrete reports static kinds IoT Edge's compiler knows exactly. Only
// mismatches between these are rejected at parse time (IoT Edge rejects
// them too, with "Invalid operands"); everything else is decided at run
// time, where a mismatch is undefined.
func concrete(k kind) bool { return k == kStr || k == kNum || k == kBool }

func (p *parser) checkBinary(op token, l, r kind) error {
	var want kind
	switch op.kind {
	case tPlus, tMinus, tMul, tDiv, tMod:
		want = kNum
	case tConcat:
		want = kStr
	case tAnd, tOr:
		want = kBool
	case tCoalesce:
		return nil
	default: // comparisons: both sides of one type
		if concrete(l) && concrete(r) && l != r {
			return p.errAt(op, "invalid operands to %s: have %s and %s, want two of the same type%s",
				op.text, l, r, hint(l, r))
		}
		return nil
	}
	for _, k := range []kind{l, r} {
		if concrete(k) && k != want {
			return p.errAt(op, "invalid operands to %s: have %s and %s, want %s", op.text, name(l), name(r), want)
		}
	}
	return nil
}

func name(k kind) string {
	if k == kAny {
		return "any"
	}
	return k.String()
}

func hint(l, r kind) string {
	if (l == kStr && r == kNum) || (l == kNum && r == kStr) {
		return " (property values are strings: compare as_number(prop) with a number, or the property with a quoted string)"
	}
	return ""
}

// call parses name(args…). Function names are case-insensitive.
func (p *parser) call(fn token) (node, error) {
	f, ok := builtins[strings.ToLower(fn.text)]
	if !ok {
		return nil, p.errAt(fn, "unknown function %q", fn.text)
	}
	open := p.tok
	p.advance()
	n := &callNode{fn: f, name: fn.text, h: 1}
	for p.tok.kind != tRParen {
		if len(n.args) > 0 {
			if err := p.expect(tComma, "expected , or ) in call to "+fn.text); err != nil {
				return nil, err
			}
		}
		p.depth++
		a, err := p.expr(1)
		p.depth--
		if err != nil {
			return nil, err
		}
		n.args = append(n.args, a)
		n.h = max(n.h, a.height()+1)
	}
	if err := p.checkCall(fn, f, n.args); err != nil {
		return nil, err
	}
	if f.name == "twin_change_includes" {
		if err := p.twinArg(fn, n, p.lex.src[open.pos+1:p.tok.pos]); err != nil {
			return nil, err
		}
	}
	p.advance()
	return n, nil
}

func (p *parser) checkCall(fn token, f *builtin, args []node) error {
	if len(args) < f.min || (f.max >= 0 && len(args) > f.max) {
		want := itoa(f.min)
		switch {
		case f.max < 0:
			want += " or more"
		case f.max > f.min:
			want += " to " + itoa(f.max)
		}
		return p.errAt(fn, "%s takes %s arguments, have %d", fn.text, want, len(args))
	}
	for i, a := range args {
		if k := a.static(); concrete(k) && !f.param(i).has(k) {
			return p.errAt(fn, "argument %d of %s is a %s", i+1, fn.text, k)
		}
	}
	return nil
}

func itoa(i int) string { return string(rune('0' + i)) }

// twinArg takes twin_change_includes's argument as text, like IoT Edge,
// and checks it names a twin section.
func (p *parser) twinArg(fn token, n *callNode, raw string) error {
	if !p.twinOK {
		return p.errAt(fn, "twin_change_includes needs FROM /twinChangeNotifications")
	}
	raw = strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, raw)
	ok := false
	for _, pre := range []string{"properties.reported.", "properties.desired.", "tags."} {
		ok = ok || hasPrefixFold(raw, pre)
	}
	path, msg := parseBodyPath(raw)
	if !ok || msg != "" {
		return p.errAt(fn, "twin_change_includes(%s): want a path under properties.reported., properties.desired. or tags.", raw)
	}
	n.twin, n.raw, n.args = path, raw, nil
	return nil
}
