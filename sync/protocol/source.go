package protocol

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/outpost-edge/outpost/store/kv"
)

// SplitSource reads a message's Source, "devices/d" or
// "devices/d/modules/m"; anything else is not ok.
func SplitSource(src string) (device, module string, ok bool) {
	rest, ok := strings.CutPrefix(src, "devices/")
	if !ok || rest == "" {
		return "", "", false
	}
	device, module, isModule := strings.Cut(rest, "/modules/")
	if device == "" || strings.Contains(device, "/") || isModule && (module == "" || strings.Contains(module, "/")) {
		return "", "", false
	}
	return device, module, true
}

// ScopeDigest names a set of identities as an edge receives them in a Push
// (their wire form, in the order sent): it changes when, and only when,
// what the edge would hold changes. Pull.Scope carries it back.
func ScopeDigest(ids []Identity) string {
	data, _ := kv.Marshal(ids)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:16])
}
