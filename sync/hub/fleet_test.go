package hub

import (
	"testing"

	"github.com/outpost-edge/outpost/sync/protocol"
)

// The fleet view shows what the link told the hub: the backlog of the
// last pull, the messages stored and when the edge was last seen.
func TestEdgesFromTheLink(t *testing.T) {
	f := newFixture(t)
	if es := f.h.Edges(); len(es) != 1 || es[0].DeviceID != "gw1" || !es[0].LastSeen.IsZero() || es[0].Online {
		t.Fatalf("before any pull: %+v, want gw1 never seen", es)
	}
	pull := protocol.Pull{Instance: "edge:gw1.a1", WaitMs: 10, Backlog: 42}
	if code, body := f.frame(t, protocol.PathPull, pull, &protocol.Push{}); code != 200 {
		t.Fatalf("pull: %d %s", code, body)
	}
	msgs := protocol.Messages{Instance: "edge:gw1.a1", Queue: "$upstream/p0",
		Msgs: []protocol.Message{{Seq: 1, Source: "devices/dev1", Body: []byte(`{"t":1}`)}, {Seq: 2, Source: "devices/dev1", Body: []byte(`{"t":2}`)}}}
	if code, body := f.frame(t, protocol.PathMessages, msgs, &protocol.MessagesAck{}); code != 200 {
		t.Fatalf("messages: %d %s", code, body)
	}
	es := f.h.Edges()
	if len(es) != 1 || es[0].Backlog != 42 || es[0].BacklogAt.IsZero() || es[0].LastSeen.IsZero() || es[0].Messages != 2 || es[0].LastMessage.IsZero() {
		t.Errorf("after a pull with backlog 42 and 2 messages: %+v", es)
	}
}
