package query

import (
	"fmt"
	"math"
	"strings"
)

// Limits on what Parse and ParseCondition accept.
const (
	MaxTextBytes = 8 << 10 // query or condition text
	MaxDepth     = 32      // nesting of parentheses, NOT and function calls
	MaxInItems   = 1000    // constants in one IN or NIN list
)

// Source is the collection a query reads (its FROM clause).
type Source int

// The collections of IoT Hub's query language.
const (
	Devices Source = iota // FROM devices: device twins, keyed by device id
	Modules               // FROM devices.modules: module twins, keyed "deviceId/moduleId"
	Jobs                  // FROM devices.jobs: per-device job records, keyed by job id
)

// String is the collection's name as FROM spells it.
func (s Source) String() string {
	switch s {
	case Modules:
		return "devices.modules"
	case Jobs:
		return "devices.jobs"
	}
	return "devices"
}

// prefix is the collection name a path may start with (devices.jobs.status).
func (s Source) prefix() []string { return strings.Split(s.String(), ".") }

// Query is a parsed query. It is immutable and safe for concurrent use.
type Query struct {
	top     int // 0: no TOP
	star    bool
	cols    []column
	from    Source
	where   *Condition
	groupBy []*pathNode
	agg     bool
	text    string // canonical text, see String
}

// column is one projection of SELECT.
type column struct {
	path  *pathNode // nil for COUNT()
	alias string    // as written after AS, "" when none
	name  string    // the result field: alias, the path's last key, or $1, $2, …
	at    token     // first token, for errors
}

// Condition is a parsed WHERE clause. It is immutable and safe for
// concurrent use. The zero Condition (and a nil one) matches everything.
type Condition struct{ root node }

// From reports the collection the query reads.
func (q *Query) From() Source { return q.from }

// Where returns the query's condition; never nil (it matches every
// document when the query has no WHERE).
func (q *Query) Where() *Condition { return q.where }

// Aggregate reports whether the query uses COUNT() or GROUP BY: its rows
// are computed over all matching documents, not one per document.
func (q *Query) Aggregate() bool { return q.agg }

// Star reports whether the query is SELECT *: its items are the documents
// themselves (twins, as IoT Hub names them).
func (q *Query) Star() bool { return q.star }

// Top returns n of SELECT TOP n, 0 when the query has no TOP.
func (q *Query) Top() int { return q.top }

// String is the query's canonical text: keywords upper-case, single
// spaces, the minimum of parentheses. Parse(q.String()) gives an equal query.
func (q *Query) String() string {
	var b strings.Builder
	b.WriteString("SELECT ")
	if q.top > 0 {
		fmt.Fprintf(&b, "TOP %d ", q.top)
	}
	if q.star {
		b.WriteByte('*')
	}
	for i, c := range q.cols {
		if i > 0 {
			b.WriteString(", ")
		}
		if c.path == nil {
			b.WriteString("COUNT()")
		} else {
			c.path.format(&b, precPrimary)
		}
		if c.alias != "" {
			b.WriteString(" AS " + c.alias)
		}
	}
	b.WriteString(" FROM " + q.from.String())
	if q.where.root != nil {
		b.WriteString(" WHERE ")
		q.where.root.format(&b, precOr)
	}
	for i, g := range q.groupBy {
		if i == 0 {
			b.WriteString(" GROUP BY ")
		} else {
			b.WriteString(", ")
		}
		g.format(&b, precPrimary)
	}
	return b.String()
}

// String is the condition's canonical text, "*" when it matches all.
func (c *Condition) String() string {
	if c == nil || c.root == nil {
		return "*"
	}
	var b strings.Builder
	c.root.format(&b, precOr)
	return b.String()
}

// Match reports whether the condition is true for doc, a JSON-decoded
// object (numbers float64 or json.Number). Undefined is not true: a
// comparison with a missing property, or between different types, does
// not match, and neither does its NOT.
func (c *Condition) Match(doc map[string]any) bool {
	if c == nil || c.root == nil {
		return true
	}
	t, ok := truth(c.root.eval(doc))
	return ok && t
}

// Parse parses a query: SELECT … FROM devices|devices.modules|devices.jobs
// [WHERE …] [GROUP BY …]. Every error is an *Error that wraps ErrSyntax.
func Parse(sql string) (*Query, error) {
	p, err := newParser(sql)
	if err != nil {
		return nil, err
	}
	q, err := p.query()
	if err != nil {
		return nil, err
	}
	q.text = q.String()
	return q, nil
}

// ParseCondition parses a bare condition, as a deployment's
// targetCondition holds ("tags.environment='prod' AND …"). "" and "*"
// match every document. Paths are not prefixed by a collection.
func ParseCondition(where string) (*Condition, error) {
	if s := strings.TrimSpace(where); s == "" || s == "*" {
		if len(where) > MaxTextBytes {
			return nil, tooLong(where)
		}
		return &Condition{}, nil
	}
	p, err := newParser(where)
	if err != nil {
		return nil, err
	}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, errAt(t, "expected AND, OR or the end of the condition")
	}
	return &Condition{root: n}, nil
}

type parser struct {
	toks   []token
	i      int
	depth  int
	prefix []string // collection prefix stripped from paths, nil in ParseCondition
}

// tooLong refuses a text past MaxTextBytes, pointing at the first byte
// over the limit.
func tooLong(src string) *Error {
	return &Error{Pos: MaxTextBytes, Near: token{kind: tIdent, text: src[MaxTextBytes:]}.near(), Msg: fmt.Sprintf("text longer than %d bytes; shorten it (an IN list of ids can be split into several queries)", MaxTextBytes)}
}

func newParser(src string) (*parser, error) {
	if len(src) > MaxTextBytes {
		return nil, tooLong(src)
	}
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	return &parser{toks: toks}, nil
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) peek2() token { return p.toks[min(p.i+1, len(p.toks)-1)] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

// accept consumes the next token when it is s.
func (p *parser) accept(s string) bool {
	if p.peek().is(s) {
		p.i++
		return true
	}
	return false
}

func (p *parser) expect(s, format string, args ...any) error {
	if !p.accept(s) {
		return errAt(p.peek(), format, args...)
	}
	return nil
}

func (p *parser) enter(t token) error {
	if p.depth++; p.depth > MaxDepth {
		return errAt(t, "nested deeper than %d (parentheses, NOT and function calls); simplify the condition", MaxDepth)
	}
	return nil
}

// query parses the whole statement.
func (p *parser) query() (*Query, error) {
	q := &Query{where: &Condition{}}
	if err := p.expect("SELECT", "expected SELECT; a query reads SELECT * FROM devices [WHERE …]"); err != nil {
		return nil, err
	}
	if err := p.selectList(q); err != nil {
		return nil, err
	}
	if err := p.from(q); err != nil {
		return nil, err
	}
	if p.accept("WHERE") {
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		q.where = &Condition{root: n}
	}
	if err := p.groupBy(q); err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		if t.is("ORDER") {
			return nil, errAt(t, "ORDER BY is not supported; results come in key order")
		}
		return nil, errAt(t, "expected %s or the end of the query", p.clausesAfter(q))
	}
	return q, p.check(q)
}

func (p *parser) clausesAfter(q *Query) string {
	switch {
	case q.groupBy != nil:
		return "',' and another GROUP BY path"
	case q.where.root != nil:
		return "AND, OR, GROUP BY"
	}
	return "WHERE, GROUP BY"
}

func (p *parser) selectList(q *Query) error {
	if p.accept("TOP") {
		t := p.next()
		if t.kind != tNumber || t.num < 1 || t.num > math.MaxInt32 || t.num != math.Trunc(t.num) {
			return errAt(t, "TOP takes a whole number from 1 to %d: SELECT TOP 10 * FROM devices", math.MaxInt32)
		}
		q.top = int(t.num)
	}
	if p.accept("*") {
		q.star = true
		return nil
	}
	for {
		if err := p.column(q); err != nil {
			return err
		}
		if !p.accept(",") {
			return nil
		}
	}
}

func (p *parser) column(q *Query) error {
	start := p.peek()
	c := column{at: start}
	switch {
	case start.is("COUNT") && p.peek2().is("("):
		p.i += 2
		if err := p.expect(")", "COUNT takes no argument: write COUNT()"); err != nil {
			return err
		}
		q.agg = true
	case start.kind == tIdent && p.peek2().is("("):
		return errAt(start, "only COUNT() may be used in SELECT; functions go in WHERE")
	default:
		path, err := p.path("a property path, * or COUNT() after SELECT")
		if err != nil {
			return err
		}
		c.path = path
	}
	if p.accept("AS") {
		t := p.next()
		if t.kind != tIdent || t.reserved() {
			return errAt(t, "expected a name after AS (letters, digits, _ and $; not a keyword)")
		}
		c.alias = t.text
	}
	q.cols = append(q.cols, c)
	return nil
}

// from parses FROM and the collection, then names the columns (paths in
// SELECT may start with the collection's name, known only now).
func (p *parser) from(q *Query) error {
	t := p.peek()
	if !p.accept("FROM") {
		if q.star || len(q.cols) > 0 {
			return errAt(t, "expected FROM (or ',' and another projection)")
		}
		return errAt(t, "expected FROM")
	}
	src := p.peek()
	ok := p.accept("devices")
	if ok && p.accept(".") {
		switch {
		case p.accept("modules"):
			q.from = Modules
		case p.accept("jobs"):
			q.from = Jobs
		default:
			ok = false
		}
	}
	if !ok {
		return errAt(src, "expected devices, devices.modules or devices.jobs after FROM")
	}
	p.prefix = q.from.prefix()
	for _, c := range q.cols {
		if c.path != nil {
			p.strip(c.path)
		}
	}
	return p.nameColumns(q, t)
}

func (p *parser) nameColumns(q *Query, from token) error {
	seen := map[string]bool{}
	unnamed := 0
	for i := range q.cols {
		c := &q.cols[i]
		c.name = c.alias
		if c.name == "" && c.path != nil {
			c.name = c.path.name()
		}
		if c.name == "" {
			unnamed++
			c.name = fmt.Sprintf("$%d", unnamed)
		}
		if seen[c.name] {
			return errAt(from, "two columns are named %q; give one of them another name with AS", c.name)
		}
		seen[c.name] = true
	}
	return nil
}

func (p *parser) groupBy(q *Query) error {
	t := p.peek()
	if !p.accept("GROUP") {
		return nil
	}
	if err := p.expect("BY", "expected BY after GROUP"); err != nil {
		return err
	}
	for {
		g, err := p.path("a property path after GROUP BY")
		if err != nil {
			return err
		}
		q.groupBy = append(q.groupBy, g)
		if !p.accept(",") {
			break
		}
	}
	q.agg = true
	if q.star {
		return errAt(t, "SELECT * cannot be grouped; select the GROUP BY paths and COUNT()")
	}
	return nil
}

// check enforces what aggregates allow in SELECT.
func (p *parser) check(q *Query) error {
	if !q.agg {
		return nil
	}
	for _, c := range q.cols {
		if c.path == nil {
			continue
		}
		found := false
		for _, g := range q.groupBy {
			found = found || g.equal(c.path)
		}
		if !found {
			if q.groupBy == nil {
				return errAt(c.at, "%s is selected with COUNT() but not grouped; add GROUP BY %[1]s", pathText(c.path))
			}
			return errAt(c.at, "%s is selected but not in GROUP BY; group by it or remove it", pathText(c.path))
		}
	}
	return nil
}

func pathText(n *pathNode) string {
	var b strings.Builder
	n.format(&b, precPrimary)
	return b.String()
}
