package crdt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Apply turns a local IoT Hub merge patch on sec into one op with key k and
// dot d (§3.2): a scalar or array sets Val and raises the clear at its
// path; {} sets Obj; null sets Del and raises the clear without touching
// ancestors; every non-null element bumps its ancestors to Obj. Values are
// those of json.Decoder.UseNumber. The op is atomic: on error nothing
// changes. It returns the fields that changed, to persist and index.
func (d *Doc) Apply(sec Section, patch map[string]any, k Key, dt Dot) ([]Field, error) {
	if sec < Tags || sec > Reported {
		return nil, fmt.Errorf("apply patch to %s: %w", sec, ErrBadSection)
	}
	pl := planner{sec: sec, k: k, d: dt, seen: map[string]bool{}}
	if err := pl.walk(Path{}, patch); err != nil {
		return nil, fmt.Errorf("apply patch to %s: %w", sec, err)
	}
	return d.mergeAll(pl.fields), nil
}

// Replace is PUT semantics: a clear at the root, then doc as a patch, all
// in one op.
func (d *Doc) Replace(sec Section, doc map[string]any, k Key, dt Dot) ([]Field, error) {
	if sec < Tags || sec > Reported {
		return nil, fmt.Errorf("replace %s: %w", sec, ErrBadSection)
	}
	pl := planner{sec: sec, k: k, d: dt, seen: map[string]bool{}}
	pl.add(Path{}, true, 0, nil)
	if err := pl.walk(Path{}, doc); err != nil {
		return nil, fmt.Errorf("replace %s: %w", sec, err)
	}
	return d.mergeAll(pl.fields), nil
}

func (d *Doc) mergeAll(fs []Field) []Field {
	var changed []Field
	for _, f := range fs {
		if d.Merge(f) {
			changed = append(changed, f)
		}
	}
	return changed
}

// planner collects the fields of one op before any is merged.
type planner struct {
	sec    Section
	k      Key
	d      Dot
	seen   map[string]bool
	fields []Field
}

// add plans one field and reports whether it is new in this op.
func (pl *planner) add(p Path, clear bool, kind Kind, v []byte) bool {
	id := p.String() + "\x00w"
	if clear {
		id = p.String() + "\x00c"
	}
	if pl.seen[id] {
		return false
	}
	pl.seen[id] = true
	f := Field{Section: pl.sec, Path: slices.Clone(p), IsClear: clear}
	if clear {
		f.C = Clear{K: pl.k, D: pl.d}
	} else {
		f.W = Write{K: pl.k, D: pl.d, Kind: kind, Value: v}
	}
	pl.fields = append(pl.fields, f)
	return true
}

// bump marks every proper non-root ancestor of p as an object, deepest
// first; an ancestor bumped before has its own ancestors bumped already.
func (pl *planner) bump(p Path) {
	for i := len(p) - 1; i >= 1; i-- {
		if !pl.add(p[:i], false, Obj, nil) {
			return
		}
	}
}

func (pl *planner) walk(prefix Path, obj map[string]any) error {
	if len(prefix) >= maxValueDepth {
		// Far deeper than IoT Hub's 10 levels; refusing keeps the per-path
		// registers (quadratic in depth) bounded.
		return fmt.Errorf("patch nested deeper than %d under %q: %w", maxValueDepth, prefix.String(), ErrUnsupportedValue)
	}
	keys := make([]string, 0, len(obj))
	for key := range obj {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	for _, key := range keys {
		if key == "" || strings.Contains(key, ".") {
			return fmt.Errorf("key %q under %q: %w", key, prefix.String(), ErrBadKey)
		}
		p := append(slices.Clone(prefix), key)
		if err := pl.element(p, obj[key]); err != nil {
			return err
		}
	}
	return nil
}

func (pl *planner) element(p Path, v any) error {
	switch v := v.(type) {
	case nil:
		pl.add(p, false, Del, nil)
		pl.add(p, true, 0, nil)
	case map[string]any:
		if len(v) > 0 {
			return pl.walk(p, v)
		}
		pl.add(p, false, Obj, nil)
		pl.bump(p)
	default:
		b, err := encodeValue(v)
		if err != nil {
			return fmt.Errorf("value at %q: %w", p.String(), err)
		}
		pl.add(p, false, Val, b)
		pl.add(p, true, 0, nil)
		pl.bump(p)
	}
	return nil
}

// encodeValue returns the canonical JSON text of a scalar, array or (in the
// overlay) object value.
func encodeValue(v any) ([]byte, error) {
	if err := checkValue(v, 0); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode: %w: %w", ErrUnsupportedValue, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

const maxValueDepth = 64

func checkValue(v any, depth int) error {
	if depth > maxValueDepth {
		return fmt.Errorf("nested deeper than %d: %w", maxValueDepth, ErrUnsupportedValue)
	}
	switch v := v.(type) {
	case nil, string, bool, int, int64, int32, uint32, uint64:
		return nil
	case json.Number:
		if !isNumberText(string(v)) {
			return fmt.Errorf("number %q: %w", string(v), ErrUnsupportedValue)
		}
		return nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("number %v: %w", v, ErrUnsupportedValue)
		}
		return nil
	case []any:
		for _, e := range v {
			if err := checkValue(e, depth+1); err != nil {
				return err
			}
		}
		return nil
	case map[string]any:
		for _, e := range v {
			if err := checkValue(e, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("type %T: %w", v, ErrUnsupportedValue)
}

// isNumberText reports whether s is a JSON number literal.
func isNumberText(s string) bool {
	if s == "" || (s[0] != '-' && (s[0] < '0' || s[0] > '9')) {
		return false
	}
	var n json.Number
	return json.Unmarshal([]byte(s), &n) == nil
}

// decodeValue parses a stored value with UseNumber.
func decodeValue(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data: %w", ErrUnsupportedValue)
	}
	return v, nil
}
