package edge

import (
	"reflect"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/sync/protocol"
)

// TestPresenceReports: the first report lists every client (full); later
// ones only what changed — a new connection, a disconnection, activity
// that moved a minute — and a report the hub never answered is sent again.
func TestPresenceReports(t *testing.T) {
	t0 := time.UnixMilli(1767225600000)
	now := t0
	var clients []presenceClient
	p := newPresence(func() []presenceClient { return clients }, func() time.Time { return now })
	ms := func(d time.Duration) int64 { return t0.Add(d).UnixMilli() }
	check := func(full bool, ack bool, want ...protocol.Presence) {
		t.Helper()
		got, done := p.report(full)
		if !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("report(full %v) = %+v, want %+v", full, got, want)
		}
		if ack {
			done()
		}
	}
	clients = []presenceClient{{ID: "dev1", Since: t0.UnixMilli()}}
	check(true, true, protocol.Presence{ID: "dev1", Connected: true, Since: ms(0), Activity: ms(0)})
	check(false, true)

	now = t0.Add(10 * time.Second)
	clients[0].Count = 5 // active, but within the minute: not yet told
	check(false, true)
	now = t0.Add(70 * time.Second)
	clients[0].Count = 6
	check(false, false, protocol.Presence{ID: "dev1", Connected: true, Since: ms(0), Activity: ms(70 * time.Second)})
	// Not acknowledged (the pull failed): the next report carries it again.
	check(false, true, protocol.Presence{ID: "dev1", Connected: true, Since: ms(0), Activity: ms(70 * time.Second)})

	now = t0.Add(80 * time.Second)
	clients = []presenceClient{{ID: "gw/mod", Since: now.UnixMilli()}}
	check(false, true,
		protocol.Presence{ID: "gw/mod", Connected: true, Since: ms(80 * time.Second), Activity: ms(80 * time.Second)},
		protocol.Presence{ID: "dev1", Since: ms(80 * time.Second)})
	check(false, true)
	// A reconnection is a new state even between two reports.
	now = t0.Add(90 * time.Second)
	clients = []presenceClient{{ID: "gw/mod", Since: now.UnixMilli()}}
	check(false, true, protocol.Presence{ID: "gw/mod", Connected: true, Since: ms(90 * time.Second), Activity: ms(90 * time.Second)})
	// A client below a child edge comes with the activity the child saw.
	clients = append(clients, presenceClient{ID: "leaf", Since: ms(0), Activity: ms(85 * time.Second)})
	check(false, true, protocol.Presence{ID: "leaf", Connected: true, Since: ms(0), Activity: ms(85 * time.Second)})
	clients[1].Activity = ms(100 * time.Second) // within the minute: not yet told
	check(false, true)
	clients[1].Activity = ms(150 * time.Second)
	check(false, true, protocol.Presence{ID: "leaf", Connected: true, Since: ms(0), Activity: ms(150 * time.Second)})
}
