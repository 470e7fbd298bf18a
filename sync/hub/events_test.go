package hub

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/sync/protocol"
)

// msgs makes a batch of queue q from edge:gw1.a1 with sequence numbers
// from..to; body(seq) gives each body, and every message carries the same
// device message id, as devices that count from 1 after each boot do.
func msgs(from, to uint64, body func(uint64) string) protocol.Messages {
	m := protocol.Messages{Instance: "edge:gw1.a1", Queue: "$upstream/pdefault"}
	for s := from; s <= to; s++ {
		m.Msgs = append(m.Msgs, protocol.Message{Seq: s, ID: fmt.Sprint((s-1)%5 + 1), Source: "devices/dev1", Body: []byte(body(s)), EnqueuedAt: int64(1000 + s)})
	}
	return m
}

// only keeps the messages of m with the given sequence numbers.
func only(m protocol.Messages, seqs ...uint64) protocol.Messages {
	var kept []protocol.Message
	for _, msg := range m.Msgs {
		if slices.Contains(seqs, msg.Seq) {
			kept = append(kept, msg)
		}
	}
	m.Msgs = kept
	return m
}

func bodyOf(prefix string) func(uint64) string {
	return func(s uint64) string { return fmt.Sprintf("%s-%d", prefix, s) }
}

// The hub's rule, batch after batch: what each ack says and what the log
// holds at the end.
func TestExactlyOnceBySequenceAndDigest(t *testing.T) {
	type step struct {
		batch                            protocol.Messages
		upTo                             uint64
		appended, duplicates, collisions int
	}
	for _, c := range []struct {
		name       string
		steps      []step
		wantBodies []string
		collisions int64
	}{
		{"retransmission of the same batch is stored once", []step{
			{msgs(1, 3, bodyOf("a")), 3, 3, 0, 0},
			{msgs(1, 3, bodyOf("a")), 3, 0, 3, 0},
		}, []string{"a-1", "a-2", "a-3"}, 0},
		{"partial overlap stores only the new messages", []step{
			{msgs(1, 4, bodyOf("a")), 4, 4, 0, 0},
			{msgs(3, 7, bodyOf("a")), 7, 3, 2, 0},
		}, []string{"a-1", "a-2", "a-3", "a-4", "a-5", "a-6", "a-7"}, 0},
		{"message ids reused across reboots are never a reason to drop", []step{
			{msgs(1, 15, func(s uint64) string { return fmt.Sprintf("boot%d-%d", (s-1)/5, (s-1)%5+1) }), 15, 15, 0, 0},
		}, nil, 0},
		{"a clone with the same instance: other content under the same seqs is stored and counted", []step{
			{msgs(1, 3, bodyOf("original")), 3, 3, 0, 0},
			{msgs(1, 3, bodyOf("clone")), 3, 3, 0, 3},
			{msgs(1, 3, bodyOf("clone")), 3, 0, 3, 0},    // the clone's retransmission
			{msgs(1, 3, bodyOf("original")), 3, 0, 3, 0}, // and the original's
			{msgs(2, 4, bodyOf("clone")), 4, 1, 2, 0},
		}, []string{"original-1", "original-2", "original-3", "clone-1", "clone-2", "clone-3", "clone-4"}, 3},
		{"stored and new seqs interleaved in one batch", []step{
			{only(msgs(1, 7, bodyOf("a")), 2, 4, 6), 6, 3, 0, 0},
			{msgs(1, 8, bodyOf("a")), 8, 5, 3, 0},
		}, []string{"a-2", "a-4", "a-6", "a-1", "a-3", "a-5", "a-7", "a-8"}, 0},
		{"seqs at or below the cursor are not trusted alone", []step{
			{msgs(5, 6, bodyOf("a")), 6, 2, 0, 0},
			{msgs(1, 4, bodyOf("a")), 4, 4, 0, 0},
		}, []string{"a-5", "a-6", "a-1", "a-2", "a-3", "a-4"}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			for i, s := range c.steps {
				ack, err := f.h.Messages(f.ctx, "gw1", s.batch)
				if err != nil {
					t.Fatal(err)
				}
				want := protocol.MessagesAck{UpTo: s.upTo, Appended: s.appended, Duplicates: s.duplicates, Collisions: s.collisions}
				if ack != want {
					t.Errorf("step %d: ack %+v, want %+v", i, ack, want)
				}
			}
			evs, _ := f.h.Events(1, 1000)
			var bodies []string
			for _, e := range evs {
				bodies = append(bodies, string(e.Body))
			}
			if c.wantBodies == nil { // the reboot case: 15 events, ids 1-5 three times
				if len(evs) != 15 || evs[14].MessageID != "5" || evs[5].MessageID != "1" {
					t.Fatalf("events %v", bodies)
				}
			} else if strings.Join(bodies, " ") != strings.Join(c.wantBodies, " ") {
				t.Fatalf("log %v, want %v", bodies, c.wantBodies)
			}
			if got := f.h.metrics.instanceCollisions.Load(); got != c.collisions {
				t.Fatalf("collisions counted %d, want %d", got, c.collisions)
			}
		})
	}
}

// Two edges started from one data directory on machines with the same
// machine id share an instance: both batches are stored, the collision is
// counted in /metrics and told to the edge; the same batch twice is stored
// once.
func TestClonedInstanceSameMachine(t *testing.T) {
	f := newFixture(t)
	a, b := msgs(1, 5, bodyOf("gw-a")), msgs(1, 5, bodyOf("gw-b"))
	for i, m := range []protocol.Messages{a, b, b, a} {
		var ack protocol.MessagesAck
		if code, body := f.frame(t, protocol.PathMessages, m, &ack); code != 200 {
			t.Fatalf("batch %d: %d %s", i, code, body)
		}
		if i == 1 && (ack.Appended != 5 || ack.Collisions != 5) {
			t.Fatalf("the clone's batch: %+v, want 5 stored and 5 collisions", ack)
		}
		if i >= 2 && (ack.Appended != 0 || ack.Duplicates != 5) {
			t.Fatalf("batch %d sent again: %+v, want 5 duplicates", i, ack)
		}
	}
	if evs, _ := f.h.Events(1, 100); len(evs) != 10 {
		t.Fatalf("%d events, want 10 (5 of each clone)", len(evs))
	}
	_, metrics := f.do(t, "GET", "/metrics", ownerToken(), nil, nil)
	if !strings.Contains(string(metrics), "\noutpost_hub_instance_collisions_total 5\n") {
		t.Fatalf("metrics lack the collisions:\n%s", metrics)
	}
}
