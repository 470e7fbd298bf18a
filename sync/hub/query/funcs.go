package query

import (
	"slices"
	"strings"
)

// function is a built-in function of conditions.
type function struct {
	name  string // canonical spelling
	arity int
	eval  func(doc map[string]any, args []node) (any, bool)
}

// functions by upper-case name; STARTS_WITH, ENDS_WITH are the spellings
// of IoT Hub's routing docs and mean the same as STARTSWITH, ENDSWITH.
var functions = map[string]*function{}

func init() {
	for _, f := range []*function{
		isKind("IS_DEFINED", func(k kind) bool { return k != kUndefined }),
		isKind("IS_NULL", func(k kind) bool { return k == kNull }),
		isKind("IS_BOOL", func(k kind) bool { return k == kBool }),
		isKind("IS_NUMBER", func(k kind) bool { return k == kNumber }),
		isKind("IS_STRING", func(k kind) bool { return k == kString }),
		isKind("IS_OBJECT", func(k kind) bool { return k == kObject }),
		isKind("IS_ARRAY", func(k kind) bool { return k == kArray }),
		isKind("IS_PRIMITIVE", func(k kind) bool { return k >= kNull && k <= kString }),
		strFunc("STARTSWITH", strings.HasPrefix),
		strFunc("ENDSWITH", strings.HasSuffix),
		strFunc("CONTAINS", strings.Contains),
		{name: "ARRAY_CONTAINS", arity: 2, eval: arrayContains},
	} {
		functions[f.name] = f
	}
	functions["STARTS_WITH"] = functions["STARTSWITH"]
	functions["ENDS_WITH"] = functions["ENDSWITH"]
}

// functionNames lists the functions for error messages.
func functionNames() string {
	var names []string
	for n := range functions {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// isKind makes a type check: always defined, false for undefined.
func isKind(name string, test func(kind) bool) *function {
	return &function{name: name, arity: 1, eval: func(doc map[string]any, args []node) (any, bool) {
		v, ok := args[0].eval(doc)
		k := kUndefined
		if ok {
			k = kindOf(v)
		}
		return test(k), true
	}}
}

// strFunc makes a string predicate, undefined unless both are strings.
func strFunc(name string, f func(s, sub string) bool) *function {
	return &function{name: name, arity: 2, eval: func(doc map[string]any, args []node) (any, bool) {
		a, aok := args[0].eval(doc)
		b, bok := args[1].eval(doc)
		s, sok := a.(string)
		sub, subok := b.(string)
		if !aok || !bok || !sok || !subok {
			return nil, false
		}
		return f(s, sub), true
	}}
}

// arrayContains is true when an element of the array equals the value
// (numbers by value, objects and arrays by content); undefined when the
// first argument is not an array or the second is undefined.
func arrayContains(doc map[string]any, args []node) (any, bool) {
	a, aok := args[0].eval(doc)
	v, vok := args[1].eval(doc)
	arr, isArr := a.([]any)
	if !aok || !vok || !isArr || kindOf(v) == kUndefined {
		return nil, false
	}
	want := canonString(v, true)
	for _, e := range arr {
		if canonString(e, true) == want {
			return true, true
		}
	}
	return false, true
}
