// Package route compiles Azure IoT Edge routes and decides, for each
// message, which endpoints (and so which durable queues) it goes to.
//
//	cfg, err := route.ParseConfig(edgeHubDesired) // or route.DefaultConfig()
//	for _, t := range cfg.Match(&route.Message{Source: src, App: app, Sys: sys, Body: b}) {
//		queue := t.Queue() // "$upstream", "modules/m/inputs/i_Pri0", …
//	}
//
// The package is pure: standard library only, no I/O, no goroutines. A
// hand-written lexer and precedence-climbing parser implement IoT Edge's
// Route.g4/Condition.g4; conditions evaluate with three-valued logic and a
// route fires only when its condition is true.
//
// # Compatibility with IoT Edge
//
// Copied exactly: the grammar and its lexer (longest match, so "a-b" and
// "x*2" are identifiers and operators need spaces, as in IoT Edge);
// case-insensitive keywords, AND/OR/NOT and function names, lower-case
// true/false/null/undefined; operator precedence with unary - and NOT
// binding tightest; source matching (drop one trailing '*' and trailing
// '/', add '/', case-insensitive prefix, so "o" does not match "o10");
// $name resolution (application property "$name", then $body query, then
// system property) and {$name}; case-insensitive property names; $body
// queries only for contentType application/json with contentEncoding
// utf-8, utf-16 or utf-32; priorities, TTLs and queue names.
//
// Where IoT Edge's compiler rejects an operator or function applied to
// operands whose types it knows (application and system properties are
// strings, literals and function results have fixed types), Parse rejects
// it too, with a hint: `temperature > 30` is an error because temperature
// is a string; write `as_number(temperature) > 30`. Types only known at
// run time ($body values) never cause parse errors: a mismatch evaluates
// to undefined.
//
// # Decisions where IoT Edge differs or is silent
//
//   - A $body path that does not exist is undefined (IoT Hub semantics);
//     edgeHub returns null, which made is_defined($body.x) always true.
//     Objects and arrays are not values: undefined.
//   - A missing contentEncoding counts as utf-8 (edgeHub requires one), and
//     "application/json; charset=utf-8" is accepted. UTF-16/32 are
//     little-endian. Bodies over MaxBodyBytes are not queried.
//   - null: null = null is true, null compared with anything else is
//     undefined; in AND/OR/NOT, arithmetic and functions null behaves like
//     undefined (edgeHub's run-time rule for $body values).
//   - AND/OR are Kleene logic (false AND undefined = false, true OR
//     undefined = true); NOT undefined is undefined. Bools support only
//     = and <>; ordering them is undefined.
//   - Strings compare ordinally, case-sensitively; length, index_of and
//     substring count UTF-16 code units like .NET. substring with a
//     fractional or out-of-range index is undefined.
//   - Arithmetic is float64; a NaN result (0/0, sqrt(-1)) is undefined.
//   - twin_change_includes(path) is accepted only in routes FROM
//     /twinChangeNotifications and only for paths under
//     properties.reported., properties.desired. or tags.; it is true when
//     the path exists in the notification body (read as JSON whatever its
//     content type), false when not, undefined without a JSON body.
//   - Source paths accept segments that lex as numbers or keywords (a
//     module named "42"), and a trailing '/'. '*' inside a path is literal.
//   - Config: schemaVersion may be absent, 1.0 (string routes only), 1.1,
//     1.2 or 1.3; a null route is skipped; route object fields are
//     case-insensitive and unknown ones ignored. A missing global
//     timeToLiveSecs means DefaultTTL; 0 or -1 means no expiry (TTL 0).
//   - Queue caps (outpost's additions): a route object's maxBytes (whole
//     bytes) and overflow ("reject" or "drop-oldest") apply to the queue
//     the route feeds; storeAndForwardConfiguration.maxBytes caps all
//     queues together and its overflow is every queue's default. Malformed
//     values are refused with ErrCap.
//   - When several routes reach one endpoint, the highest priority wins
//     with its route's TTL; at equal priority the longest TTL wins.
//
// # Free MQTT topics (outpost's addition)
//
// FROM /topics/<MQTT topic filter> takes the messages local MQTT clients
// publish on free topics (those outside devices/… and $…), with + and #
// as in MQTT: FROM /topics/factory/+/temp INTO $upstream. The "/topics"
// keyword is case-insensitive, the filter is not (MQTT topics are
// case-sensitive); the filter runs to the next white space, so topics with
// spaces cannot be routed. A level that mixes a wildcard with other
// characters, # before the last level, * as a level (use + or #), $…
// filters and devices/… (route telemetry with /messages/…) are refused
// with the position of the fault. These routes take only free-topic
// messages, and IoT Edge's sources (/messages/*, /*) never take them, so
// the default route stays telemetry only.
//
// Conditions see the topic and the publisher as the system properties
// $mqtt-topic and $mqtt-account (SysTopic, SysAccount; {$mqtt-topic} skips
// an application property of that name), MQTT 5 user properties as
// application properties, and the body: $body queries read it as JSON when
// its MQTT 5 content type is application/json or, when it has no content
// type, whenever it parses as a JSON object.
//
// Hostile input is bounded: route text by MaxRouteLen, topic filters by MaxFilterLevels, nesting by 64
// levels, operator chains by 1024, bodies by MaxBodyBytes.
package route
