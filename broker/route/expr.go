package route

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
)

const (
	// maxDepth bounds nesting (parentheses, unary operators, function
	// arguments) so hostile text cannot exhaust the parser's stack.
	maxDepth = 64
	// maxHeight bounds the condition tree (long AND/OR chains), which
	// bounds evaluation recursion.
	maxHeight = 1024
)

type parser struct {
	name   string
	lex    lexer
	tok    token
	depth  int
	twinOK bool // twin_change_includes allowed (route reads twin changes)
}

func (p *parser) advance() { p.tok = p.lex.next() }

func (p *parser) expect(k tokKind, msg string) error {
	if p.tok.kind != k {
		return p.errAt(p.tok, "%s", msg)
	}
	p.advance()
	return nil
}

// binPrec gives binary operator precedence, loosest first, as in
// Condition.g4: ?? < OR < AND < equality < comparison < + - || < * / %.
func binPrec(k tokKind) int {
	switch k {
	case tCoalesce:
		return 1
	case tOr:
		return 2
	case tAnd:
		return 3
	case tEq, tNe, tNe2:
		return 4
	case tLt, tLe, tGt, tGe:
		return 5
	case tPlus, tMinus, tConcat:
		return 6
	case tMul, tDiv, tMod:
		return 7
	}
	return 0
}

// expr parses by precedence climbing; binary operators are left
// associative.
func (p *parser) expr(minPrec int) (node, error) {
	left, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		prec := binPrec(p.tok.kind)
		if prec == 0 || prec < minPrec {
			return left, nil
		}
		op := p.tok
		p.advance()
		right, err := p.expr(prec + 1)
		if err != nil {
			return nil, err
		}
		if left, err = p.binary(op, left, right); err != nil {
			return nil, err
		}
	}
}

func (p *parser) binary(op token, l, r node) (node, error) {
	if err := p.checkBinary(op, l.static(), r.static()); err != nil {
		return nil, err
	}
	h := max(l.height(), r.height()) + 1
	if h > maxHeight {
		return nil, p.errAt(op, "condition too long: more than %d chained operators", maxHeight)
	}
	return &binNode{op: op.kind, l: l, r: r, h: h}, nil
}

// unary parses prefix '-' and NOT, which bind tighter than every binary
// operator (so NOT a = b is (NOT a) = b, as in IoT Edge).
func (p *parser) unary() (node, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxDepth {
		return nil, p.errAt(p.tok, "condition nested deeper than %d levels", maxDepth)
	}
	op := p.tok
	if op.kind != tMinus && op.kind != tNot {
		return p.primary()
	}
	p.advance()
	x, err := p.unary()
	if err != nil {
		return nil, err
	}
	want := kNum
	if op.kind == tNot {
		want = kBool
	}
	if k := x.static(); concrete(k) && k != want {
		return nil, p.errAt(op, "invalid operand to unary %s: have %s, want %s", opText[op.kind], k, want)
	}
	return &unaryNode{op: op.kind, x: x, h: x.height() + 1}, nil
}

func (p *parser) primary() (node, error) {
	t := p.tok
	switch t.kind {
	case tLParen:
		p.advance()
		x, err := p.expr(1)
		if err != nil {
			return nil, err
		}
		return x, p.expect(tRParen, "missing closing )")
	case tString, tInt, tHex, tReal, tTrue, tFalse, tNull, tUndefined:
		return p.literal(t)
	case tSysProp:
		p.advance()
		return p.sysProp(t, false)
	case tLBrace:
		return p.escaped()
	case tID:
		p.advance()
		if p.tok.kind == tLParen {
			return p.call(t)
		}
		return &appNode{name: t.text}, nil
	}
	return nil, p.unexpected(t)
}

func (p *parser) unexpected(t token) error {
	switch t.kind {
	case tEOF:
		return p.errAt(t, "expected an expression")
	case tUnterminated:
		return p.errAt(t, "unterminated string or invalid escape (only \\\" \\' \\\\ and \\uXXXX)")
	case tQueryPath:
		return p.errAt(t, "[ and ] are only allowed in $body queries")
	case tUnknown:
		return p.errAt(t, "invalid symbol %q", t.text)
	case tRParen:
		return p.errAt(t, "unmatched closing )")
	}
	return p.errAt(t, "expected an expression")
}

func (p *parser) literal(t token) (node, error) {
	p.advance()
	n := &litNode{text: t.text}
	switch t.kind {
	case tString:
		s, err := p.unquote(t)
		if err != nil {
			return nil, err
		}
		n.v = strV(s)
	case tInt, tReal:
		// Text such as "e5" lexes as REAL but is no number: undefined, as
		// double.TryParse fails in IoT Edge. Overflow gives ±Inf.
		if f, err := strconv.ParseFloat(t.text, 64); err == nil || math.IsInf(f, 0) {
			n.v = numV(f)
		}
	case tHex:
		if u, err := strconv.ParseUint(t.text[2:], 16, 64); err == nil {
			n.v = numV(float64(int64(u)))
		}
	case tTrue, tFalse:
		n.v = boolV(t.kind == tTrue)
	case tNull:
		n.v = nullV
	}
	return n, nil
}

// sysProp resolves $name at compile time into a body query, a system
// property, or (names with [ ] that are no body query) undefined.
func (p *parser) sysProp(t token, escaped bool) (node, error) {
	n := &sysNode{text: t.text, escaped: escaped}
	if hasPrefixFold(t.text, "$body.") {
		path, msg := parseBodyPath(t.text[len("$body."):])
		if msg != "" {
			return nil, p.errAt(t, "invalid $body query: %s", msg)
		}
		n.body = path
		return n, nil
	}
	n.never = strings.ContainsAny(t.text, "[]")
	return n, nil
}

func (p *parser) escaped() (node, error) {
	p.advance()
	t := p.tok
	if t.kind != tSysProp {
		return nil, p.errAt(t, "expected a $property inside { }")
	}
	p.advance()
	n, err := p.sysProp(t, true)
	if err != nil {
		return nil, err
	}
	return n, p.expect(tRBrace, "expected } after "+t.text)
}

// unquote decodes a STRING token: \" \' \\ and \uXXXX (UTF-16, so
// surrogate pairs combine; a lone surrogate becomes U+FFFD).
func (p *parser) unquote(t token) (string, error) {
	body := t.text[1 : len(t.text)-1]
	if !strings.ContainsRune(body, '\\') {
		return body, nil
	}
	var units []uint16
	var b strings.Builder
	flush := func() {
		b.WriteString(string(utf16.Decode(units)))
		units = units[:0]
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c != '\\':
			flush()
			b.WriteByte(c)
		case body[i+1] == 'u':
			u, _ := strconv.ParseUint(body[i+2:i+6], 16, 16)
			units = append(units, uint16(u))
			i += 5
		default:
			flush()
			b.WriteByte(body[i+1])
			i++
		}
	}
	flush()
	return b.String(), nil
}
