package route

import (
	"math"
	"strconv"
)

// kind is the dynamic type of a condition value.
type kind uint8

const (
	kUndef kind = iota
	kNull
	kBool
	kNum
	kStr
)

func (k kind) String() string {
	return [...]string{"undefined", "null", "bool", "number", "string"}[k]
}

// value is a condition value. Numbers are float64, as in IoT Edge (double);
// NaN never escapes an operation: it becomes undefined.
type value struct {
	k kind
	b bool
	n float64
	s string
}

var (
	undef  = value{}
	nullV  = value{k: kNull}
	trueV  = value{k: kBool, b: true}
	falseV = value{k: kBool}
)

func boolV(b bool) value  { return value{k: kBool, b: b} }
func strV(s string) value { return value{k: kStr, s: s} }

func numV(f float64) value {
	if math.IsNaN(f) {
		return undef
	}
	return value{k: kNum, n: f}
}

func (v value) isTrue() bool { return v.k == kBool && v.b }

// String renders v for tests and debugging.
func (v value) String() string {
	switch v.k {
	case kNull:
		return "null"
	case kBool:
		return strconv.FormatBool(v.b)
	case kNum:
		return strconv.FormatFloat(v.n, 'g', -1, 64)
	case kStr:
		return strconv.Quote(v.s)
	}
	return "undefined"
}

// arith applies + - * / % to two numbers; anything else is undefined.
func arith(op tokKind, a, b value) value {
	if a.k != kNum || b.k != kNum {
		return undef
	}
	switch op {
	case tPlus:
		return numV(a.n + b.n)
	case tMinus:
		return numV(a.n - b.n)
	case tMul:
		return numV(a.n * b.n)
	case tDiv:
		return numV(a.n / b.n)
	}
	return numV(math.Mod(a.n, b.n))
}

// compare applies = != <> < <= > >=. Operands of different types, or any
// undefined operand, give undefined. null equals null. Strings compare
// ordinally (byte-wise, case-sensitive); bools only for (in)equality.
func compare(op tokKind, a, b value) value {
	if a.k != b.k || a.k == kUndef {
		return undef
	}
	c, ok := order(a, b)
	if !ok {
		if op != tEq && op != tNe && op != tNe2 {
			return undef
		}
		c = 1
		if a.b == b.b {
			c = 0
		}
	}
	switch op {
	case tEq:
		return boolV(c == 0)
	case tNe, tNe2:
		return boolV(c != 0)
	case tLt:
		return boolV(c < 0)
	case tLe:
		return boolV(c <= 0)
	case tGt:
		return boolV(c > 0)
	}
	return boolV(c >= 0)
}

// order compares two values of the same kind; ok is false for bools.
func order(a, b value) (int, bool) {
	switch a.k {
	case kNull:
		return 0, true
	case kNum:
		switch {
		case a.n < b.n:
			return -1, true
		case a.n > b.n:
			return 1, true
		}
		return 0, true
	case kStr:
		switch {
		case a.s < b.s:
			return -1, true
		case a.s > b.s:
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// tri maps a value to Kleene logic: true, false, or unknown (anything that
// is not a bool, null included).
func tri(v value) (b, known bool) {
	if v.k != kBool {
		return false, false
	}
	return v.b, true
}

func and(a, b value) value {
	x, xk := tri(a)
	y, yk := tri(b)
	switch {
	case (xk && !x) || (yk && !y):
		return falseV
	case xk && yk:
		return trueV
	}
	return undef
}

func or(a, b value) value {
	x, xk := tri(a)
	y, yk := tri(b)
	switch {
	case (xk && x) || (yk && y):
		return trueV
	case xk && yk:
		return falseV
	}
	return undef
}

func not(a value) value {
	if x, ok := tri(a); ok {
		return boolV(!x)
	}
	return undef
}
