package query

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
)

// kind is a JSON value's type as the language sees it.
type kind uint8

const (
	kUndefined kind = iota
	kNull
	kBool
	kNumber
	kString
	kArray
	kObject
)

// kindOf classifies a JSON-decoded value; numbers may be float64,
// json.Number or any Go integer or float (hand-built docs). Anything else
// (a struct, a typed slice) is not a JSON value: undefined.
func kindOf(v any) kind {
	switch v.(type) {
	case nil:
		return kNull
	case bool:
		return kBool
	case string:
		return kString
	case float64, json.Number, int, int64, int32, int16, int8, uint, uint64, uint32, uint16, uint8, float32:
		return kNumber
	case []any:
		return kArray
	case map[string]any:
		return kObject
	}
	return kUndefined
}

// number converts any number kindOf accepts to float64; a json.Number that
// does not parse is not a number.
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, n == n // NaN is not a JSON number
	case json.Number:
		f, err := strconv.ParseFloat(string(n), 64)
		return f, err == nil
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case int32:
		return float64(n), true
	case int16:
		return float64(n), true
	case int8:
		return float64(n), true
	case uint:
		return float64(n), true
	case uint64:
		return float64(n), true
	case uint32:
		return float64(n), true
	case uint16:
		return float64(n), true
	case uint8:
		return float64(n), true
	case float32:
		return float64(n), n == n
	}
	return 0, false
}

// compare applies a comparison operator with IoT Hub's (Cosmos DB SQL's)
// rules: operands of different types, objects, arrays and undefined give
// undefined; bools and nulls only support = and !=.
func compare(op string, a any, aok bool, b any, bok bool) (any, bool) {
	if !aok || !bok {
		return nil, false
	}
	ka, kb := kindOf(a), kindOf(b)
	if ka != kb {
		return nil, false
	}
	var c int
	switch ka {
	case kNumber:
		x, ok1 := number(a)
		y, ok2 := number(b)
		if !ok1 || !ok2 {
			return nil, false
		}
		c = cmpFloat(x, y)
	case kString:
		c = strings.Compare(a.(string), b.(string))
	case kBool, kNull:
		if op != "=" && op != "!=" && op != "<>" {
			return nil, false
		}
		if ka == kBool && a.(bool) != b.(bool) {
			c = 1
		}
	default:
		return nil, false
	}
	switch op {
	case "=":
		return c == 0, true
	case "!=", "<>":
		return c != 0, true
	case "<":
		return c < 0, true
	case "<=":
		return c <= 0, true
	case ">":
		return c > 0, true
	case ">=":
		return c >= 0, true
	}
	return nil, false
}

func cmpFloat(x, y float64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// canon writes a canonical encoding of a value: equal JSON values (1 and
// 1.0, objects with keys in any order) encode the same. It keys GROUP BY
// groups and compares objects and arrays for ARRAY_CONTAINS.
func canon(b *strings.Builder, v any, ok bool) {
	if !ok {
		b.WriteByte('u')
		return
	}
	switch kindOf(v) {
	case kNull:
		b.WriteByte('n')
	case kBool:
		if v.(bool) {
			b.WriteByte('t')
		} else {
			b.WriteByte('f')
		}
	case kNumber:
		f, _ := number(v)
		b.WriteByte('d')
		b.WriteString(strconv.FormatFloat(f, 'g', -1, 64))
		b.WriteByte(';')
	case kString:
		b.WriteString(strconv.Quote(v.(string)))
	case kArray:
		b.WriteByte('[')
		for _, e := range v.([]any) {
			canon(b, e, true)
			b.WriteByte(',')
		}
		b.WriteByte(']')
	case kObject:
		m := v.(map[string]any)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b.WriteByte('{')
		for _, k := range keys {
			b.WriteString(strconv.Quote(k))
			b.WriteByte(':')
			canon(b, m[k], true)
			b.WriteByte(',')
		}
		b.WriteByte('}')
	default:
		b.WriteByte('u')
	}
}

func canonString(v any, ok bool) string {
	var b strings.Builder
	canon(&b, v, ok)
	return b.String()
}

// order is a total order over values (undefined first, then null, bools,
// numbers, strings, arrays, objects) that sorts GROUP BY rows.
func order(a any, aok bool, b any, bok bool) int {
	ka, kb := kUndefined, kUndefined
	if aok {
		ka = kindOf(a)
	}
	if bok {
		kb = kindOf(b)
	}
	if ka != kb {
		return int(ka) - int(kb)
	}
	switch ka {
	case kBool:
		x, y := a.(bool), b.(bool)
		if x == y {
			return 0
		} else if y {
			return -1
		}
		return 1
	case kNumber:
		x, _ := number(a)
		y, _ := number(b)
		return cmpFloat(x, y)
	case kString:
		return strings.Compare(a.(string), b.(string))
	case kArray, kObject:
		return strings.Compare(canonString(a, true), canonString(b, true))
	}
	return 0
}
