package demo

import (
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/localapi"
	"github.com/outpost-edge/outpost/supervisor"
)

func testSnapshot() Snapshot {
	return Snapshot{
		Elapsed: 75 * time.Second,
		LinkCut: true,
		Status: &localapi.Status{
			Link: "offline since 2026-01-01T00:00:00Z",
			Queues: []localapi.QueueStatus{
				{Name: "$upstream/p0"}, {Name: "$upstream/p3", Depth: 2, OldestSeconds: 4},
				{Name: "$upstream/pdefault", Depth: 40, OldestSeconds: 9.6},
				{Name: "modules/filter/inputs/input1/pdefault"},
			},
			Modules: map[string]supervisor.ModuleStatus{"sensor": {RuntimeStatus: "running"}, "filter": {RuntimeStatus: "backoff", RestartCount: 2}},
		},
		InRate: 15, OutRate: 0,
		Figures: Figures{Sent: 300, AtHub: 258, Lost: 42},
		Twins: []TwinState{{Device: "leaf-1", Followed: true},
			{Device: "leaf-2", Pending: []string{"desired.setpoint hub→edge"}}},
	}
}

// TestStatusLine: the line the demo prints without a terminal, with the
// queues summed per endpoint (priorities together, the oldest age).
func TestStatusLine(t *testing.T) {
	want := "link offline since 2026-01-01T00:00:00Z (link cut by the demo: r restores it); $upstream 42 (oldest 10s); " +
		"in 15.0/s, out 0.0/s; sent 300, at hub 258, on the way 42, duplicated 0; twins 1/2 converged; filter backoff; sensor running"
	if got := statusLine(testSnapshot()); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// TestRenderScreen: the live view shows the link, rates, queues per
// endpoint, twins with what is pending, and modules.
func TestRenderScreen(t *testing.T) {
	var b strings.Builder
	renderScreen(&b, header{hub: "http://127.0.0.1:1", dashboard: "http://127.0.0.1:2/login?code=x", dir: "/d", keys: true}, testSnapshot())
	want := `outpost demo  1m15s  (/d)
hub        http://127.0.0.1:1
dashboard  http://127.0.0.1:2/login?code=x
keys       c cut the link   r restore it   t edit a twin at the hub   q quit

link       offline since 2026-01-01T00:00:00Z (link cut by the demo: r restores it)
messages   in 15.0/s  out 0.0/s   leaf devices: sent 300, at hub 258, on the way 42, duplicated 0

QUEUE                         DEPTH  OLDEST
$upstream                     42     10s
modules/filter/inputs/input1  0      0s

TWIN    CONVERGED  PENDING
leaf-1  yes
leaf-2  no         desired.setpoint hub→edge

MODULE  STATUS   RESTARTS
filter  backoff  2
sensor  running  0

`
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
