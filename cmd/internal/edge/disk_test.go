package edge

import (
	"testing"

	"github.com/outpost-edge/outpost/broker/route"
	"github.com/outpost-edge/outpost/store/queue"
)

// The status's overflow is the one in force: a deployment's global
// overflow overrides --overflow.
func TestOverflowOf(t *testing.T) {
	for _, c := range []struct {
		name   string
		routes *route.Config
		def    queue.Overflow
		want   string
	}{
		{"no deployment", nil, queue.DropOldest, "drop-oldest"},
		{"deployment sets none", &route.Config{}, queue.Reject, "reject"},
		{"deployment overrides", &route.Config{Overflow: route.OverflowDropOldest}, queue.Reject, "drop-oldest"},
		{"deployment overrides the other way", &route.Config{Overflow: route.OverflowReject}, queue.DropOldest, "reject"},
	} {
		if got := overflowOf(c.routes, c.def); got != c.want {
			t.Errorf("%s: overflowOf = %q, want %q", c.name, got, c.want)
		}
	}
}
