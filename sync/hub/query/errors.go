package query

import (
	"errors"
	"fmt"
)

// Sentinel errors; callers tell them apart with errors.Is.
var (
	// ErrSyntax is wrapped by every *Error: the query text is malformed,
	// too long, nested too deeply or uses something the language lacks.
	ErrSyntax = errors.New("query syntax error")
	// ErrContinuation: the continuation token is garbled or belongs to
	// another query. The client should run the query again from the start,
	// without the x-ms-continuation header.
	ErrContinuation = errors.New("invalid continuation token")
	// ErrOrder: Run's docs were not yielded in strictly ascending key
	// order, which paging by last key relies on (a bug in the caller).
	ErrOrder = errors.New("documents not in ascending key order")
)

// Error locates a problem in the text given to Parse or ParseCondition.
type Error struct {
	Pos  int    // byte offset (0-based) of the offending token; len(text) at the end
	Near string // the offending token as written, "" at the end of the text
	Msg  string // what was expected or what is wrong, and what to do
}

// Error reads `query: at 27 (near "GROUP"): expected FROM`.
func (e *Error) Error() string {
	if e.Near == "" {
		return fmt.Sprintf("query: at %d (end of text): %s", e.Pos, e.Msg)
	}
	return fmt.Sprintf("query: at %d (near %q): %s", e.Pos, e.Near, e.Msg)
}

// Unwrap makes errors.Is(err, ErrSyntax) true.
func (e *Error) Unwrap() error { return ErrSyntax }

func errAt(t token, format string, args ...any) *Error {
	return &Error{Pos: t.pos, Near: t.near(), Msg: fmt.Sprintf(format, args...)}
}
