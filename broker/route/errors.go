package route

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors; every error returned by this package wraps one of them.
var (
	// ErrSyntax: the route text does not follow the grammar, or its
	// condition uses an operator, function or literal wrongly.
	ErrSyntax = errors.New("route syntax error")
	// ErrConfig: the $edgeHub desired properties are malformed.
	ErrConfig = errors.New("invalid route configuration")
	// ErrName: a route name breaks the pattern ^[^\.\$# ]+$.
	ErrName = errors.New("invalid route name")
	// ErrPriority: an object route's priority is not an integer 0–9.
	ErrPriority = errors.New("invalid route priority")
	// ErrTTL: a timeToLiveSecs is not an integer in range.
	ErrTTL = errors.New("invalid time to live")
	// ErrSink: the INTO clause names an endpoint outpost cannot deliver to.
	ErrSink = errors.New("invalid route sink")
	// ErrCap: a maxBytes or overflow setting is malformed.
	ErrCap = errors.New("invalid queue cap")
	// ErrSchema: schemaVersion is not one this package understands.
	ErrSchema = errors.New("unsupported schema version")
)

// SyntaxError locates a problem in a route's text. Pos is a byte offset into
// Text. It wraps ErrSyntax, or ErrSink when the INTO clause is at fault.
type SyntaxError struct {
	Route string // route name, "" when parsed without one
	Text  string // the full route text
	Pos   int    // byte offset of the offending token in Text
	Near  string // the offending token, "" at the end of the text
	Msg   string
	kind  error
}

func (e *SyntaxError) Error() string {
	where := "at end of route"
	if e.Near != "" {
		where = fmt.Sprintf("at offset %d near %q", e.Pos, e.Near)
	}
	return fmt.Sprintf("route %q: %s: %s", e.Route, where, e.Msg)
}

// Unwrap lets callers use errors.Is(err, ErrSyntax) (or ErrSink).
func (e *SyntaxError) Unwrap() error {
	if e.kind == nil {
		return ErrSyntax
	}
	return e.kind
}

// Caret renders the route text with a caret under the offending position,
// for logs and CLI output:
//
//	FROM /messages/* INOT $upstream
//	                 ^ expected INTO
func (e *SyntaxError) Caret() string {
	line := strings.NewReplacer("\n", " ", "\r", " ", "\t", " ").Replace(e.Text)
	pos := min(max(e.Pos, 0), len(line))
	return line + "\n" + strings.Repeat(" ", len([]rune(line[:pos]))) + "^ " + e.Msg
}
