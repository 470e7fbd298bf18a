package route

import "strings"

// tokKind enumerates the tokens of IoT Edge's GrammarLexer.g4.
type tokKind uint8

const (
	tEOF tokKind = iota
	tSelect
	tFrom
	tWhere
	tInto
	tString
	tUnterminated
	tInt
	tHex
	tReal
	tTrue
	tFalse
	tNull
	tUndefined
	tLParen
	tRParen
	tComma
	tPlus
	tMinus
	tMul
	tDiv
	tMod
	tAnd
	tOr
	tNot
	tEq
	tNe  // !=
	tNe2 // <>
	tLe
	tGe
	tGt
	tLt
	tConcat   // ||
	tCoalesce // ??
	tLBrace
	tRBrace
	tSysProp // $name, $body.a[0]
	tID
	tQueryPath // a run with [ or ] that is not a SYS_PROP: never valid
	tUnknown
)

type token struct {
	kind tokKind
	pos  int
	text string
}

// lexer reproduces ANTLR's rules: at each position the longest match wins
// and, on a tie, the rule listed first in GrammarLexer.g4. That is why
// "a-b", "a!" and "x*2" are single identifiers in IoT Edge (and here):
// operators made of identifier characters need surrounding spaces.
type lexer struct {
	src      string
	pos      int
	comments bool // skip /* … */ (only inside a condition)
}

// idChar reports ID_CHARS: anything but ()<>@,;:\"/[]?={} and whitespace.
func idChar(c byte) bool {
	switch c {
	case '(', ')', '<', '>', '@', ',', ';', ':', '\\', '"', '/', '[', ']', '?', '=', '{', '}', ' ', '\t', '\n', '\r':
		return false
	}
	return true
}

// pathChar reports QUERY_PATH_CHARS: ID_CHARS plus [ and ].
func pathChar(c byte) bool { return c == '[' || c == ']' || idChar(c) }

func run(s string, i int, ok func(byte) bool) int {
	j := i
	for j < len(s) && ok(s[j]) {
		j++
	}
	return j - i
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool {
	return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func (l *lexer) skipSpace() {
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			l.pos++
		case l.comments && strings.HasPrefix(l.src[l.pos:], "/*"):
			end := strings.Index(l.src[l.pos+2:], "*/")
			if end < 0 {
				return // not a comment: '/' then '*'
			}
			l.pos += end + 4
		default:
			return
		}
	}
}

// next returns the next token; at the end it returns tEOF forever.
func (l *lexer) next() token {
	l.skipSpace()
	if l.pos >= len(l.src) {
		return token{kind: tEOF, pos: len(l.src)}
	}
	kind, n := l.longest(l.pos)
	t := token{kind: kind, pos: l.pos, text: l.src[l.pos : l.pos+n]}
	l.pos += n
	return t
}

// longest picks the token at i by ANTLR's rule: longest match, then the
// earliest rule. Candidates are tried in rule order and replace the best
// only when strictly longer.
func (l *lexer) longest(i int) (tokKind, int) {
	s := l.src
	best, bestN := tUnknown, 0
	try := func(k tokKind, n int) {
		if n > bestN {
			best, bestN = k, n
		}
	}
	word := s[i : i+run(s, i, idChar)]
	if k := keyword(word, true); k != tUnknown {
		try(k, len(word))
	}
	if k, n := stringLen(s, i); n > 0 {
		try(k, n)
	}
	try(tInt, intLen(s, i))
	try(tHex, hexLen(s, i))
	try(tReal, realLen(s, i))
	if k := keyword(word, false); k != tUnknown {
		try(k, len(word))
	}
	if k, n := opLen(s, i); n > 0 {
		try(k, n)
	}
	if s[i] == '$' && i+1 < len(s) && pathChar(s[i+1]) {
		try(tSysProp, 1+run(s, i+1, pathChar))
	}
	try(tID, len(word))
	try(tQueryPath, run(s, i, pathChar))
	try(tUnknown, 1)
	return best, bestN
}

// keyword maps a whole identifier run to its keyword token. The route
// keywords (first=true) and AND/OR/NOT are case-insensitive; the literals
// true/false/null/undefined are lower case only, as in the grammar.
func keyword(w string, first bool) tokKind {
	if first {
		switch {
		case strings.EqualFold(w, "select"):
			return tSelect
		case strings.EqualFold(w, "from"):
			return tFrom
		case strings.EqualFold(w, "where"):
			return tWhere
		case strings.EqualFold(w, "into"):
			return tInto
		}
		return tUnknown
	}
	switch w {
	case "true":
		return tTrue
	case "false":
		return tFalse
	case "null":
		return tNull
	case "undefined":
		return tUndefined
	}
	switch {
	case strings.EqualFold(w, "and"):
		return tAnd
	case strings.EqualFold(w, "or"):
		return tOr
	case strings.EqualFold(w, "not"):
		return tNot
	}
	return tUnknown
}

// stringLen matches STRING, or UNTERMINATED_STRING when the closing quote
// is missing or a backslash starts an invalid escape.
func stringLen(s string, i int) (tokKind, int) {
	q := s[i]
	if q != '"' && q != '\'' {
		return tUnknown, 0
	}
	j := i + 1
	for j < len(s) {
		switch c := s[j]; {
		case c == q:
			return tString, j + 1 - i
		case c != '\\':
			j++
		case j+1 < len(s) && (s[j+1] == '"' || s[j+1] == '\'' || s[j+1] == '\\'):
			j += 2
		case j+5 < len(s) && s[j+1] == 'u' && isHex(s[j+2]) && isHex(s[j+3]) && isHex(s[j+4]) && isHex(s[j+5]):
			j += 6
		default:
			return tUnterminated, j - i
		}
	}
	return tUnterminated, j - i
}

func intLen(s string, i int) int {
	j := i
	if j < len(s) && s[j] == '-' {
		j++
	}
	d := run(s, j, isDigit)
	if d == 0 {
		return 0
	}
	return j + d - i
}

func hexLen(s string, i int) int {
	if i+2 >= len(s) || s[i] != '0' || (s[i+1] != 'x' && s[i+1] != 'X') {
		return 0
	}
	d := run(s, i+2, isHex)
	if d == 0 {
		return 0
	}
	return 2 + d
}

// realLen matches '-'? [0-9]* '.' [0-9]+ EXP? | '-'? [0-9]* EXP.
func realLen(s string, i int) int {
	j := i
	if j < len(s) && s[j] == '-' {
		j++
	}
	j += run(s, j, isDigit)
	if j < len(s) && s[j] == '.' {
		if d := run(s, j+1, isDigit); d > 0 {
			k := j + 1 + d
			return k + expLen(s, k) - i
		}
		return 0
	}
	if e := expLen(s, j); e > 0 {
		return j + e - i
	}
	return 0
}

func expLen(s string, i int) int {
	if i >= len(s) || (s[i] != 'e' && s[i] != 'E') {
		return 0
	}
	j := i + 1
	if j < len(s) && (s[j] == '+' || s[j] == '-') {
		j++
	}
	d := run(s, j, isDigit)
	if d == 0 {
		return 0
	}
	return j + d - i
}

var ops = []struct {
	text string
	kind tokKind
}{
	{"!=", tNe}, {"<>", tNe2}, {"<=", tLe}, {">=", tGe}, {"||", tConcat}, {"??", tCoalesce},
	{"(", tLParen}, {")", tRParen}, {",", tComma}, {"+", tPlus}, {"-", tMinus},
	{"*", tMul}, {"/", tDiv}, {"%", tMod}, {"=", tEq}, {">", tGt}, {"<", tLt},
	{"{", tLBrace}, {"}", tRBrace},
}

func opLen(s string, i int) (tokKind, int) {
	for _, o := range ops {
		if strings.HasPrefix(s[i:], o.text) {
			return o.kind, len(o.text)
		}
	}
	return tUnknown, 0
}
