package crdt

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
)

// This file is the sequential specification, written independently of
// Doc: plain JSON documents and the IoT Hub merge-patch rules.

// oracleDoc replays ops (sorted by key by the caller) on one section.
func oracleDoc(ops []simOp) map[string]any {
	doc := map[string]any{}
	for _, op := range ops {
		if op.kind == opReplace {
			doc = map[string]any{}
		}
		mergePatch(doc, op.patch)
	}
	return doc
}

// mergePatch applies an IoT Hub patch: null deletes, objects merge
// recursively, anything else replaces. A nested set through a missing or
// scalar node makes it an object; a delete through one is a no-op.
func mergePatch(doc, patch map[string]any) {
	for k, v := range patch {
		switch v := v.(type) {
		case nil:
			delete(doc, k)
		case map[string]any:
			child, ok := doc[k].(map[string]any)
			if !ok {
				if !createsStructure(v) {
					continue
				}
				child = map[string]any{}
				doc[k] = child
			}
			mergePatch(child, v)
		default:
			doc[k] = deepCopy(v)
		}
	}
}

// createsStructure: {} or any non-null leaf somewhere inside.
func createsStructure(m map[string]any) bool {
	if len(m) == 0 {
		return true
	}
	for _, v := range m {
		switch v := v.(type) {
		case nil:
		case map[string]any:
			if createsStructure(v) {
				return true
			}
		default:
			return true
		}
	}
	return false
}

func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = deepCopy(e)
		}
		return out
	}
	return v
}

// canon renders a document as canonical JSON (sorted keys).
func canon(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "!" + err.Error()
	}
	return string(b)
}

// touches reports whether op changes what is at p in the sequential
// spec's eyes: a write at p, a clear at p or above, or structure created
// under p.
func touches(op simOp, p Path) bool {
	if op.kind == opReplace {
		return true
	}
	return patchTouches(nil, op.patch, p)
}

func patchTouches(prefix Path, patch map[string]any, p Path) bool {
	for _, k := range slices.Sorted(maps.Keys(patch)) {
		q := append(slices.Clone(prefix), k)
		if !isPrefix(q, p) {
			continue
		}
		m, isMap := patch[k].(map[string]any)
		switch {
		case len(q) == len(p) && isMap && len(m) > 0:
			if createsStructure(m) {
				return true
			}
		case len(q) == len(p):
			return true
		case !isMap: // scalar, array or null above p clears p
			return true
		case len(m) > 0 && patchTouches(q, m, p):
			return true
		}
	}
	return false
}

func isPrefix(q, p Path) bool {
	return len(q) <= len(p) && slices.Equal(q, p[:len(q)])
}

// getAt returns the value at p, if any.
func getAt(doc map[string]any, p Path) (any, bool) {
	var cur any = doc
	for _, s := range p {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[s]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// putAt writes v at p, replacing missing or scalar ancestors by objects.
func putAt(doc map[string]any, p Path, v any) {
	for _, s := range p[:len(p)-1] {
		next, ok := doc[s].(map[string]any)
		if !ok {
			next = map[string]any{}
			doc[s] = next
		}
		doc = next
	}
	doc[p[len(p)-1]] = deepCopy(v)
}

func pathLess(a, b Path) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a.String(), b.String())
}
