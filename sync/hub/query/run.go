package query

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"iter"
	"slices"
	"strings"
)

// Page sizes of Run.
const (
	DefaultPageSize = 100  // Page.Max 0 (or negative)
	MaxPageSize     = 1000 // a larger Page.Max is lowered to this, as IoT Hub may use another size than asked
)

// Page asks Run for one page of results.
type Page struct {
	Max          int    // items per page: 0 means DefaultPageSize, above MaxPageSize means MaxPageSize
	Continuation string // "" for the first page, else Result.Continuation of the previous one
}

// Result is one page of a query's results.
type Result struct {
	Items        []map[string]any // never nil, so it encodes as []
	Continuation string           // "" when there are no more pages
}

// cursor is what a continuation carries, before base64url.
type cursor struct {
	Hash  string  `json:"h"`           // of the query's canonical text
	After *string `json:"k,omitempty"` // non-aggregate: the last key returned
	Off   int     `json:"o,omitempty"` // aggregate: rows already returned
	N     int     `json:"n,omitempty"` // items already returned, for TOP
}

// Run evaluates the query over docs and returns one page. docs yields
// (key, doc) in strictly ascending key order (byte-wise string order): key
// is the device id, "deviceId/moduleId" or the job id.
//
// A non-aggregate query's continuation holds the last key returned, so the
// next page resumes after it even when docs were added or removed in
// between: no document is returned twice and no unchanged one is skipped.
// An aggregate query (COUNT, GROUP BY) is computed over all docs on every
// page; its continuation holds an offset into the rows, which are ordered
// by their group values. TOP n bounds the result across all pages.
//
// Items of SELECT * are the docs themselves, not copies: encode them
// before the docs change. Other items are new maps whose values may still
// share nested objects with the docs.
//
// A continuation that is garbled or belongs to another query is
// ErrContinuation; docs out of order is ErrOrder.
func (q *Query) Run(docs iter.Seq2[string, map[string]any], page Page) (Result, error) {
	tok, err := q.decode(page.Continuation)
	if err != nil {
		return Result{}, err
	}
	size := page.Max
	if size <= 0 {
		size = DefaultPageSize
	}
	size = min(size, MaxPageSize)
	if q.agg {
		return q.runAggregate(docs, tok, size), nil
	}
	return q.runScan(docs, tok, size)
}

// Resume returns the key a continuation resumes after ("" for the first
// page and for aggregate queries), so a caller can start its iteration
// there instead of at the first key; Run skips keys up to it anyway.
func (q *Query) Resume(continuation string) (string, error) {
	tok, err := q.decode(continuation)
	if err != nil || tok.After == nil {
		return "", err
	}
	return *tok.After, nil
}

func (q *Query) runScan(docs iter.Seq2[string, map[string]any], tok cursor, size int) (Result, error) {
	limit := size
	if q.top > 0 {
		limit = min(size, q.top-tok.N)
	}
	items := []map[string]any{}
	if limit <= 0 {
		return Result{Items: items}, nil
	}
	var prev, last string
	started := false
	for key, doc := range docs {
		if started && key <= prev {
			return Result{}, fmt.Errorf("%w: %q after %q", ErrOrder, key, prev)
		}
		prev, started = key, true
		if tok.After != nil && key <= *tok.After || !q.where.Match(doc) {
			continue
		}
		if len(items) == limit {
			// Another match exists: there is a next page.
			return Result{Items: items, Continuation: q.encode(cursor{After: &last, N: tok.N + len(items)})}, nil
		}
		items = append(items, q.project(doc))
		last = key
		if q.top > 0 && tok.N+len(items) == q.top {
			break // TOP reached: no need to look for more
		}
	}
	return Result{Items: items}, nil
}

func (q *Query) project(doc map[string]any) map[string]any {
	if q.star {
		return doc
	}
	out := make(map[string]any, len(q.cols))
	for _, c := range q.cols {
		if v, ok := c.path.eval(doc); ok {
			out[c.name] = v
		}
	}
	return out
}

// group is one GROUP BY group: its values and how many docs it holds.
type group struct {
	vals  []any
	defs  []bool
	count int
}

func (q *Query) runAggregate(docs iter.Seq2[string, map[string]any], tok cursor, size int) Result {
	rows := q.aggregate(docs)
	end := len(rows)
	if q.top > 0 {
		end = min(end, q.top)
	}
	start := min(tok.Off, end)
	stop := min(start+size, end)
	res := Result{Items: rows[start:stop]}
	if stop < end {
		res.Continuation = q.encode(cursor{Off: stop})
	}
	return res
}

// aggregate computes all rows of an aggregate query, ordered by group.
func (q *Query) aggregate(docs iter.Seq2[string, map[string]any]) []map[string]any {
	groups := map[string]*group{}
	var key strings.Builder
	vals := make([]any, len(q.groupBy))
	defs := make([]bool, len(q.groupBy))
	for _, doc := range docs {
		if !q.where.Match(doc) {
			continue
		}
		key.Reset()
		for i, g := range q.groupBy {
			vals[i], defs[i] = g.eval(doc)
			canon(&key, vals[i], defs[i])
		}
		gr := groups[key.String()]
		if gr == nil {
			gr = &group{vals: slices.Clone(vals), defs: slices.Clone(defs)}
			groups[key.String()] = gr
		}
		gr.count++
	}
	if len(q.groupBy) == 0 && len(groups) == 0 {
		groups[""] = &group{} // COUNT() over nothing is one row of 0
	}
	sorted := make([]*group, 0, len(groups))
	for _, g := range groups {
		sorted = append(sorted, g)
	}
	slices.SortFunc(sorted, func(a, b *group) int {
		for i := range a.vals {
			if c := order(a.vals[i], a.defs[i], b.vals[i], b.defs[i]); c != 0 {
				return c
			}
		}
		return 0
	})
	rows := make([]map[string]any, len(sorted))
	for i, g := range sorted {
		rows[i] = q.row(g)
	}
	return rows
}

// row projects a group: a grouped path gives its value (omitted when
// undefined), COUNT() the number of docs, as float64 like JSON numbers.
func (q *Query) row(g *group) map[string]any {
	row := make(map[string]any, len(q.cols))
	for _, c := range q.cols {
		if c.path == nil {
			row[c.name] = float64(g.count)
			continue
		}
		for i, p := range q.groupBy {
			if p.equal(c.path) && g.defs[i] {
				row[c.name] = g.vals[i]
			}
		}
	}
	return row
}

func (q *Query) hash() string {
	h := fnv.New64a()
	h.Write([]byte(q.text))
	return fmt.Sprintf("%016x", h.Sum64())
}

func (q *Query) encode(t cursor) string {
	t.Hash = q.hash()
	b, _ := json.Marshal(t) // a struct of strings and ints cannot fail
	return base64.RawURLEncoding.EncodeToString(b)
}

func (q *Query) decode(s string) (cursor, error) {
	var t cursor
	if s == "" {
		return t, nil
	}
	bad := func(why string) (cursor, error) {
		return cursor{}, fmt.Errorf("%w: %s; run the query again from the start, without the x-ms-continuation header", ErrContinuation, why)
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return bad("not base64url")
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil || dec.More() {
		return bad("not a token of this hub")
	}
	if t.Hash != q.hash() {
		return bad("it belongs to another query")
	}
	if t.Off < 0 || t.N < 0 || q.agg != (t.After == nil) || q.agg && t.N != 0 || !q.agg && t.Off != 0 {
		return bad("its position is not one this query gives")
	}
	return t, nil
}
