package protocol

import (
	"crypto/sha256"
	"fmt"
	"strings"
)

// DigestHex returns the hex of a module image digest, which must be
// sha256:<64 lowercase hex> — the form hub, edge and CLI name images by;
// the hex is safe as a file name.
func DigestHex(digest string) (string, error) {
	h, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(h) != sha256.Size*2 || strings.IndexFunc(h, notLowerHex) >= 0 {
		if len(digest) > 80 {
			digest = digest[:80] + "…"
		}
		return "", fmt.Errorf("image digest %q: want sha256:<64 lowercase hex>", digest)
	}
	return h, nil
}

func notLowerHex(r rune) bool { return (r < '0' || r > '9') && (r < 'a' || r > 'f') }
