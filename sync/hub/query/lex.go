package query

import (
	"strconv"
	"strings"
)

type tokKind uint8

const (
	tEOF    tokKind = iota
	tIdent          // name, keyword or function: [A-Za-z_$][A-Za-z0-9_$]*
	tString         // 'text' with '' for a quote; val holds the text
	tNumber         // -?digits[.digits][e[+-]digits]; num holds the value
	tPunct          // ( ) [ ] , . * = != <> < > <= >=
)

type token struct {
	kind tokKind
	text string // as written
	pos  int
	val  string  // tString: the decoded text
	num  float64 // tNumber
}

// near is the token as an Error shows it: at most 24 bytes.
func (t token) near() string {
	if t.kind == tEOF {
		return ""
	}
	if len(t.text) > 24 {
		return t.text[:24] + "…"
	}
	return t.text
}

// is reports whether t is the punctuation or keyword s (keywords compare
// case-insensitively).
func (t token) is(s string) bool {
	switch t.kind {
	case tPunct:
		return t.text == s
	case tIdent:
		return strings.EqualFold(t.text, s)
	}
	return false
}

// reserved words cannot start a property path; after a dot they can
// (tags.from is a path).
var reserved = map[string]bool{
	"SELECT": true, "TOP": true, "FROM": true, "WHERE": true, "GROUP": true, "BY": true, "AS": true,
	"AND": true, "OR": true, "NOT": true, "IN": true, "NIN": true, "TRUE": true, "FALSE": true, "NULL": true,
	"ORDER": true,
}

func (t token) reserved() bool { return t.kind == tIdent && reserved[strings.ToUpper(t.text)] }

func identStart(c byte) bool {
	return c == '_' || c == '$' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func identPart(c byte) bool { return identStart(c) || isDigit(c) }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// lex splits src into tokens, ending with tEOF.
func lex(src string) ([]token, error) {
	var toks []token
	for i := 0; ; {
		for i < len(src) && strings.IndexByte(" \t\r\n", src[i]) >= 0 {
			i++
		}
		if i == len(src) {
			return append(toks, token{kind: tEOF, pos: i}), nil
		}
		t, err := lexOne(src, i)
		if err != nil {
			return nil, err
		}
		toks = append(toks, t)
		i += len(t.text)
	}
}

func lexOne(src string, i int) (token, error) {
	c := src[i]
	switch {
	case identStart(c):
		j := i + 1
		for j < len(src) && identPart(src[j]) {
			j++
		}
		return token{kind: tIdent, text: src[i:j], pos: i}, nil
	case c == '\'':
		return lexString(src, i)
	case isDigit(c) || c == '-' && i+1 < len(src) && isDigit(src[i+1]):
		return lexNumber(src, i)
	}
	for _, p := range []string{"!=", "<>", "<=", ">=", "(", ")", "[", "]", ",", ".", "*", "=", "<", ">"} {
		if strings.HasPrefix(src[i:], p) {
			return token{kind: tPunct, text: p, pos: i}, nil
		}
	}
	bad := token{kind: tPunct, text: src[i : i+1], pos: i}
	switch c {
	case '"':
		return bad, errAt(bad, "strings are single-quoted: write 'text' (a quote inside is doubled: 'it''s')")
	case '-':
		return bad, errAt(bad, "'-' only starts a negative number; the language has no arithmetic")
	}
	return bad, errAt(bad, "unexpected character; names are letters, digits, _ and $, other keys need ['key']")
}

func lexString(src string, i int) (token, error) {
	var b strings.Builder
	for j := i + 1; j < len(src); j++ {
		if src[j] != '\'' {
			b.WriteByte(src[j])
			continue
		}
		if j+1 < len(src) && src[j+1] == '\'' {
			b.WriteByte('\'')
			j++
			continue
		}
		return token{kind: tString, text: src[i : j+1], pos: i, val: b.String()}, nil
	}
	t := token{kind: tString, text: src[i:], pos: i}
	return t, errAt(t, "unterminated string: close it with ' (a quote inside is doubled: 'it''s')")
}

func lexNumber(src string, i int) (token, error) {
	j := i
	if src[j] == '-' {
		j++
	}
	digits := func() {
		for j < len(src) && isDigit(src[j]) {
			j++
		}
	}
	digits()
	if j+1 < len(src) && src[j] == '.' && isDigit(src[j+1]) {
		j++
		digits()
	}
	if j < len(src) && (src[j] == 'e' || src[j] == 'E') {
		k := j + 1
		if k < len(src) && (src[k] == '+' || src[k] == '-') {
			k++
		}
		if k < len(src) && isDigit(src[k]) {
			j = k
			digits()
		}
	}
	t := token{kind: tNumber, text: src[i:j], pos: i}
	if j < len(src) && identPart(src[j]) {
		t.text = src[i : j+1]
		return t, errAt(t, "a number runs into a name; put a space between them, or use ['key'] for a key that starts with a digit")
	}
	f, err := strconv.ParseFloat(t.text, 64)
	if err != nil {
		return t, errAt(t, "number out of range of a 64-bit float")
	}
	t.num = f
	return t, nil
}
