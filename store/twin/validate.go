package twin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Limits are the IoT Hub twin limits the store admits local writes against.
// The zero value means the current IoT Hub numbers (DefaultLimits).
type Limits struct {
	MaxDepth       int   // levels of nesting below a section; IoT Hub: 10
	MaxKeyBytes    int   // IoT Hub: 1 KB
	MaxStringBytes int   // IoT Hub: 4 KB
	MaxSection     int   // desired and reported; IoT Hub: 32 KB
	MaxTags        int   // IoT Hub: 8 KB
	MaxPatchBytes  int   // raw JSON size of one patch; default 64 KB
	MaxInt         int64 // integers must lie in [-MaxInt-1, MaxInt]; IoT Hub: 2^52-1
}

// DefaultLimits are IoT Hub's documented limits.
var DefaultLimits = Limits{
	MaxDepth: 10, MaxKeyBytes: 1024, MaxStringBytes: 4096,
	MaxSection: 32 << 10, MaxTags: 8 << 10, MaxPatchBytes: 64 << 10,
	MaxInt: 1<<52 - 1,
}

func (l Limits) orDefault() Limits {
	if l == (Limits{}) {
		return DefaultLimits
	}
	return l
}

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid twin patch")

// ValidationError says where a patch breaks a rule and what to do.
type ValidationError struct {
	Path   string // dotted path inside the section, "" for the section itself
	Reason string
}

func (e *ValidationError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("%s: %s", ErrInvalid, e.Reason)
	}
	return fmt.Sprintf("%s: at %q: %s", ErrInvalid, e.Path, e.Reason)
}

func (e *ValidationError) Unwrap() error { return ErrInvalid }

func invalid(path []string, format string, args ...any) error {
	return &ValidationError{Path: strings.Join(path, "."), Reason: fmt.Sprintf(format, args...)}
}

// ParsePatch decodes a JSON twin patch: one JSON object, numbers kept
// exact (json.Number), nothing after it, and the limits checked.
func ParsePatch(data []byte, lim Limits) (map[string]any, error) {
	lim = lim.orDefault()
	if len(data) > lim.MaxPatchBytes {
		return nil, invalid(nil, "patch is %d bytes; the limit is %d", len(data), lim.MaxPatchBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, invalid(nil, "not valid JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, invalid(nil, "extra data after the JSON object")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, invalid(nil, "a patch must be a JSON object, got %s", jsonKind(v))
	}
	if err := Validate(obj, lim); err != nil {
		return nil, err
	}
	return obj, nil
}

// Validate checks keys, values and depth of a decoded patch (or document).
func Validate(obj map[string]any, lim Limits) error {
	return validateObject(obj, nil, lim.orDefault())
}

func validateObject(obj map[string]any, path []string, lim Limits) error {
	if len(path) >= lim.MaxDepth {
		return invalid(path, "nesting deeper than %d levels; flatten the object", lim.MaxDepth)
	}
	for k, v := range obj {
		p := append(path[:len(path):len(path)], k)
		if err := validateKey(k, p, lim); err != nil {
			return err
		}
		if err := validateValue(v, p, lim, false); err != nil {
			return err
		}
	}
	return nil
}

func validateKey(k string, path []string, lim Limits) error {
	switch {
	case k == "":
		return invalid(path, "empty key")
	case len(k) > lim.MaxKeyBytes:
		return invalid(path, "key is %d bytes; the limit is %d", len(k), lim.MaxKeyBytes)
	case !utf8.ValidString(k):
		return invalid(path, "key is not valid UTF-8")
	}
	for _, r := range k {
		switch {
		case r < 0x20 || (r >= 0x7f && r <= 0x9f):
			return invalid(path, "key contains control character %U", r)
		case r == '.' || r == '$' || r == ' ' || r == '#':
			return invalid(path, "key contains %q, which IoT Hub twins forbid in keys ('.', '$', '#' and space); rename the key", r)
		}
	}
	return nil
}

func validateValue(v any, path []string, lim Limits, inArray bool) error {
	switch x := v.(type) {
	case nil:
		if inArray {
			return invalid(path, "null inside an array; IoT Hub twins do not allow it")
		}
	case bool:
	case string:
		if len(x) > lim.MaxStringBytes {
			return invalid(path, "string is %d bytes; the limit is %d", len(x), lim.MaxStringBytes)
		}
	case json.Number:
		return validateNumber(x, path, lim)
	case map[string]any:
		return validateObject(x, path, lim)
	case []any:
		if len(path) >= lim.MaxDepth {
			return invalid(path, "nesting deeper than %d levels", lim.MaxDepth)
		}
		for i, e := range x {
			if err := validateValue(e, append(path[:len(path):len(path)], fmt.Sprint(i)), lim, true); err != nil {
				return err
			}
		}
	default:
		return invalid(path, "unsupported value of type %T", v)
	}
	return nil
}

func validateNumber(n json.Number, path []string, lim Limits) error {
	if i, err := n.Int64(); err == nil {
		if i > lim.MaxInt || i < -lim.MaxInt-1 {
			return invalid(path, "integer %d is outside ±2^52, the range IoT Hub twins accept", i)
		}
		return nil
	}
	if !strings.ContainsAny(string(n), ".eE") {
		return invalid(path, "integer %s is outside ±2^52, the range IoT Hub twins accept", n)
	}
	if _, err := n.Float64(); err != nil {
		return invalid(path, "number %s is out of range", n)
	}
	return nil
}

// Size is the IoT Hub size of a section: key lengths plus value lengths,
// numbers 8 bytes, booleans 4, strings their length.
func Size(v any) int {
	switch x := v.(type) {
	case map[string]any:
		n := 0
		for k, e := range x {
			n += len(k) + Size(e)
		}
		return n
	case []any:
		n := 0
		for _, e := range x {
			n += Size(e)
		}
		return n
	case string:
		return len(x)
	case bool:
		return 4
	case json.Number, float64, int64, int:
		return 8
	}
	return 0
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	}
	return fmt.Sprintf("%T", v)
}
