package main

import (
	"bytes"
	"regexp"
	"testing"

	"github.com/outpost-edge/outpost/cmd/internal/localapi"
)

// TestEdgeStatusTableHidesIdleLanes: edge status printed eleven
// $upstream/p0…p9, pdefault rows, nearly all empty; now the idle priority
// lanes are left out.
func TestEdgeStatusTableHidesIdleLanes(t *testing.T) {
	st := localapi.Status{DeviceID: "gw1", Link: "online"}
	st.Clock.Plausible = true
	for _, p := range []string{"p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "pdefault"} {
		st.Queues = append(st.Queues, localapi.QueueStatus{Name: "$upstream/" + p})
	}
	st.Queues[2].Depth = 4
	var out bytes.Buffer
	if err := printStatus(&out, st); err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile(`(?m)^\$upstream/\S+`).FindAllString(out.String(), -1)
	if len(rows) != 2 || rows[0] != "$upstream/p2" || rows[1] != "$upstream/pdefault" {
		t.Errorf("queue rows %q, want $upstream/p2 and $upstream/pdefault:\n%s", rows, out.String())
	}
}
