package route

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// accept is a set of static kinds a parameter takes.
type accept uint8

const (
	aStr accept = 1 << iota
	aNum
	aBool
	aAll = aStr | aNum | aBool
)

func (a accept) has(k kind) bool {
	switch k {
	case kStr:
		return a&aStr != 0
	case kNum:
		return a&aNum != 0
	case kBool:
		return a&aBool != 0
	}
	return true // null, undefined and run-time values are checked at run time
}

// builtin is one IoT Edge condition function. Names are case-insensitive.
type builtin struct {
	name     string
	min, max int      // arity; max < 0: variadic
	params   []accept // the last one repeats for variadic functions
	ret      kind
	fn       func(args []value) value
}

func (f *builtin) param(i int) accept { return f.params[min(i, len(f.params)-1)] }

var builtins = map[string]*builtin{}

func init() {
	for _, f := range []*builtin{
		math1("abs", math.Abs), math1("exp", math.Exp), math1("square", func(x float64) float64 { return x * x }),
		math1("ceiling", math.Ceil), math1("floor", math.Floor), math1("sign", sign), math1("sqrt", math.Sqrt),
		{name: "power", min: 2, max: 2, params: []accept{aNum}, ret: kNum, fn: power},
		{name: "as_number", min: 1, max: 1, params: []accept{aStr | aNum}, ret: kNum, fn: asNumber},
		is("is_bool", kBool), is("is_null", kNull), is("is_number", kNum), is("is_string", kStr),
		{name: "is_defined", min: 1, max: 1, params: []accept{aAll}, ret: kBool, fn: func(a []value) value { return boolV(a[0].k != kUndef) }},
		{name: "concat", min: 2, max: -1, params: []accept{aStr}, ret: kStr, fn: concat},
		{name: "length", min: 1, max: 1, params: []accept{aStr}, ret: kNum, fn: length},
		str1("lower", strings.ToLower), str1("upper", strings.ToUpper),
		{name: "substring", min: 2, max: 3, params: []accept{aStr, aNum}, ret: kStr, fn: substring},
		{name: "index_of", min: 2, max: 2, params: []accept{aStr}, ret: kNum, fn: indexOf},
		pred("starts_with", strings.HasPrefix), pred("ends_with", strings.HasSuffix), pred("contains", strings.Contains),
		{name: "twin_change_includes", min: 1, max: 1, params: []accept{aAll}, ret: kBool},
	} {
		builtins[f.name] = f
	}
}

func math1(name string, g func(float64) float64) *builtin {
	return &builtin{name: name, min: 1, max: 1, params: []accept{aNum}, ret: kNum, fn: func(a []value) value {
		if a[0].k != kNum {
			return undef
		}
		return numV(g(a[0].n))
	}}
}

func sign(x float64) float64 {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}

func power(a []value) value {
	if a[0].k != kNum || a[1].k != kNum {
		return undef
	}
	return numV(math.Pow(a[0].n, a[1].n))
}

// asNumber parses a string the way .NET's double.TryParse with
// NumberStyles.Any and the invariant culture mostly does: surrounding
// white space, a sign, decimals and an exponent.
func asNumber(a []value) value {
	switch a[0].k {
	case kNum:
		return a[0]
	case kStr:
		s := strings.TrimSpace(a[0].s)
		if s == "" || strings.ContainsAny(s, "_xXpP") {
			return undef
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil && !math.IsInf(f, 0) {
			return undef
		}
		return numV(f)
	}
	return undef
}

func is(name string, k kind) *builtin {
	return &builtin{name: name, min: 1, max: 1, params: []accept{aAll}, ret: kBool, fn: func(a []value) value {
		return boolV(a[0].k == k)
	}}
}

func concat(a []value) value {
	var b strings.Builder
	for _, v := range a {
		if v.k != kStr {
			return undef
		}
		b.WriteString(v.s)
	}
	return strV(b.String())
}

func str1(name string, g func(string) string) *builtin {
	return &builtin{name: name, min: 1, max: 1, params: []accept{aStr}, ret: kStr, fn: func(a []value) value {
		if a[0].k != kStr {
			return undef
		}
		return strV(g(a[0].s))
	}}
}

func pred(name string, g func(s, sub string) bool) *builtin {
	return &builtin{name: name, min: 2, max: 2, params: []accept{aStr}, ret: kBool, fn: func(a []value) value {
		if a[0].k != kStr || a[1].k != kStr {
			return undef
		}
		return boolV(g(a[0].s, a[1].s))
	}}
}

// Lengths and indexes count UTF-16 code units, as .NET strings do, so
// results match IoT Edge for any text.
func units(s string) []uint16 { return utf16.Encode([]rune(s)) }

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func length(a []value) value {
	if a[0].k != kStr {
		return undef
	}
	if ascii(a[0].s) {
		return numV(float64(len(a[0].s)))
	}
	return numV(float64(len(units(a[0].s))))
}

func indexOf(a []value) value {
	if a[0].k != kStr || a[1].k != kStr {
		return undef
	}
	s, sub := a[0].s, a[1].s
	i := strings.Index(s, sub)
	if i <= 0 || ascii(s[:i]) {
		return numV(float64(i))
	}
	return numV(float64(len(units(s[:i]))))
}

// substring(s, start[, length]) needs whole, in-range numbers, like .NET's
// String.Substring; anything else is undefined rather than an exception.
func substring(a []value) value {
	if a[0].k != kStr || a[1].k != kNum || (len(a) == 3 && a[2].k != kNum) {
		return undef
	}
	u := units(a[0].s)
	start, ok := whole(a[1].n, len(u))
	if !ok {
		return undef
	}
	n := len(u) - start
	if len(a) == 3 {
		if n, ok = whole(a[2].n, len(u)-start); !ok {
			return undef
		}
	}
	return strV(string(utf16.Decode(u[start : start+n])))
}

func whole(f float64, hi int) (int, bool) {
	if f != math.Trunc(f) || f < 0 || f > float64(hi) {
		return 0, false
	}
	return int(f), true
}
