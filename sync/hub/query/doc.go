// Package query is IoT Hub's query language for device twins, module twins
// and jobs: the body of POST /devices/query and a deployment's
// targetCondition.
//
//	q, err := query.Parse("SELECT * FROM devices WHERE tags.env = 'prod' AND properties.reported.t > 20")
//	res, err := q.Run(twins, query.Page{Max: 100, Continuation: header})
//	// res.Items, res.Continuation ("" at the end)
//
//	c, err := query.ParseCondition("tags.environment='prod'")
//	if c.Match(twin) { … }
//
// The package is pure: standard library only, no I/O, no goroutines. A
// hand-written lexer and recursive-descent parser build a tree that
// evaluates over JSON-decoded documents (map[string]any; numbers float64,
// json.Number or Go integers).
//
// # The language
//
//	SELECT * | [TOP n] projection, … FROM devices | devices.modules | devices.jobs
//	  [WHERE condition] [GROUP BY path, …]
//
// Keywords, function names and true/false/null are case-insensitive;
// property names are case-sensitive. A projection is a path (named by its
// last key in the result: properties.reported.x gives "x"), path AS alias,
// or COUNT() [AS alias]; unnamed columns are $1, $2, … (SELECT COUNT() FROM
// devices gives [{"$1": n}]). COUNT() without GROUP BY gives one row; with
// GROUP BY each group gives a row of its grouped values (omitted when
// undefined) and its count, and every selected path must be grouped.
//
// Paths are names joined by dots (letters, digits, _ and $, not starting
// with a digit: properties.desired.$version), with ['odd key'] for other
// keys and [0] for array elements. In a query a path may start with the
// collection's name (devices.jobs.status is status in FROM devices.jobs).
//
// Conditions: = != <> < > <= >=, x IN [c, …] and x NIN [c, …] over
// constants, AND, OR, NOT and parentheses (NOT binds tighter than AND,
// AND tighter than OR); constants 'strings' (a quote doubled inside),
// numbers (-1, 2.5, 1e3), true, false, null. Functions: IS_DEFINED,
// IS_NULL, IS_BOOL, IS_NUMBER, IS_STRING, IS_OBJECT, IS_ARRAY,
// IS_PRIMITIVE (one argument); STARTSWITH, ENDSWITH, CONTAINS (two strings;
// STARTS_WITH and ENDS_WITH are accepted too); ARRAY_CONTAINS(array, value).
//
// # Semantics (Cosmos DB SQL's, which IoT Hub follows)
//
// A missing property is undefined. A comparison with undefined, between
// different types, or of objects or arrays is undefined; bools and null
// support only = and != (null = null is true). Numbers compare as float64,
// strings byte-wise. AND and OR are Kleene logic (false AND undefined is
// false, true OR undefined is true); NOT undefined is undefined. A document
// matches only when the condition is true, so NOT (x = 1) does not match
// documents without x. IS_* functions are always true or false (IS_DEFINED
// is true for null); the string functions are undefined unless both
// arguments are strings. x IN [...] is undefined when x is undefined, an
// object or an array, else true when x equals a constant; NIN is its
// negation. A bare path or constant is a condition too, true when its
// value is the bool true (WHERE capabilities.iotEdge).
//
// # Where it differs from IoT Hub, or IoT Hub is silent
//
//   - IoT Hub's devguide names only IS_DEFINED for twin and job queries,
//     and the IS_* and string functions for routing queries (as
//     STARTS_WITH, ENDS_WITH). STARTSWITH, ENDSWITH and ARRAY_CONTAINS are
//     Cosmos DB SQL's spellings, accepted here for both kinds of query.
//   - No SUM, AVG, MIN or MAX; no ORDER BY (results come in key order); no
//     arithmetic; no FROM devices AS d aliases; no double-quoted strings or
//     backslash escapes; no NOT IN (write NIN).
//   - GROUP BY rows are ordered by their values (undefined, null, bools,
//     numbers, strings, arrays, objects), so pages are deterministic.
//   - Limits: text up to MaxTextBytes, nesting up to MaxDepth, IN lists up
//     to MaxInItems, TOP up to 2^31-1.
//
// # Errors and paging
//
// Parse errors are *Error with the byte offset of the offending token and
// a message saying what was expected; they wrap ErrSyntax. Run pages: see
// Run for how continuations survive documents added and removed between
// pages. A continuation is base64url JSON holding a hash of the query's
// canonical text (String), so it is refused (ErrContinuation) with
// another query.
package query
