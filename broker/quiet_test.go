package broker

import (
	"fmt"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-edge/outpost/store/queue"
)

// quietTopics asks mochi once per topic and epoch, and keeps no answer
// read while a subscription may have been added.
func TestQuietTopicsRemembersPerEpoch(t *testing.T) {
	var q quietTopics
	asked := 0
	none := func(string) bool { asked++; return false }
	if !q.quiet("a/b", none) || !q.quiet("a/b", none) || asked != 1 {
		t.Fatalf("asked mochi %d times for one quiet topic, want 1", asked)
	}
	q.bump() // a SUBSCRIBE began: the answer no longer holds
	if !q.quiet("a/b", none) || asked != 2 {
		t.Fatalf("after a bump: asked %d times, want 2", asked)
	}
	// A subscription that comes in while mochi is asked: the answer is
	// used once and not kept.
	racing := func(string) bool { asked++; q.bump(); return false }
	q.bump()
	if !q.quiet("a/b", racing) || !q.quiet("a/b", none) || asked != 4 {
		t.Fatalf("an answer read across a bump was kept: asked %d times, want 4", asked)
	}
	q.bump()
	if q.quiet("a/b", func(string) bool { return true }) {
		t.Fatal("a remembered answer from an older epoch hid a subscriber")
	}
	// A listened topic is never remembered.
	q.bump()
	listened := func(string) bool { asked++; return true }
	before := asked
	if q.quiet("x", listened) || q.quiet("x", listened) || asked != before+2 {
		t.Fatalf("a listened topic: asked %d times, want 2", asked-before)
	}
}

// The memory is bounded: past quietCap topics it starts over.
func TestQuietTopicsBounded(t *testing.T) {
	var q quietTopics
	none := func(string) bool { return false }
	for i := range quietCap + 10 {
		q.quiet(fmt.Sprintf("t/%d", i), none)
	}
	n := 0
	q.topics.Range(func(any, any) bool { n++; return true })
	if n > quietCap {
		t.Fatalf("remembers %d topics, cap %d", n, quietCap)
	}
}

// A free topic nobody listened to gets a subscriber: the next publish
// reaches it, online and then offline (a persistent session's queue), and
// a session taken over keeps receiving.
func TestFreeTopicQuietThenSubscribed(t *testing.T) {
	e := newTopicEnv(t, topicRoutes, queue.Options{}, nil)
	plc, err := e.dial311("plc-1", "plc", "pw")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 { // nobody listens: remembered as quiet
		wait(t, plc.Publish("factory/l1/temp", 1, false, "unheard"))
	}
	if _, ok := e.b.quiet.topics.Load("factory/l1/temp"); !ok {
		t.Fatal("a topic nobody listens to is not remembered: the fan-out is not skipped")
	}
	got := make(chan paho.Message, 8)
	handler := func(_ paho.Client, m paho.Message) { got <- m }
	sub := e.client("dev2", "pw")
	wait(t, sub.Subscribe("factory/+/temp", 1, handler))
	wait(t, plc.Publish("factory/l1/temp", 1, false, "heard"))
	if m := recv(t, got); string(m.Payload()) != "heard" {
		t.Fatalf("subscriber got %q", m.Payload())
	}
	// Offline: its persistent session holds the message.
	sub.Disconnect(50)
	wait(t, plc.Publish("factory/l1/temp", 1, false, "while away"))
	// The handler is in place before CONNECT: the queued message may come
	// right after the CONNACK.
	o := paho.NewClientOptions().AddBroker("tcp://" + e.addr).SetClientID("dev2").
		SetUsername("hub.example/dev2/?api-version=2021-04-12").SetPassword("pw").SetAutoReconnect(false).
		SetCleanSession(false).SetOrderMatters(true).SetProtocolVersion(4).SetDefaultPublishHandler(handler)
	back := paho.NewClient(o)
	wait(t, back.Connect())
	t.Cleanup(func() { back.Disconnect(10) })
	// A message delivered before the disconnect may come again (its PUBACK
	// may not have reached the edge: QoS 1 is at least once); "unheard"
	// never, and each expected one in its turn.
	expect := func(want, why string) {
		t.Helper()
		for {
			m := recv(t, got)
			switch p := string(m.Payload()); {
			case p == want:
				return
			case p == "heard" || p == "while away" && want != "while away":
				continue // redelivered
			default:
				t.Fatalf("%s, got %q", why, p)
			}
		}
	}
	expect("while away", "back from offline")
	wait(t, plc.Publish("factory/l2/temp", 1, false, "after takeover"))
	expect("after takeover", "after the session was taken over")
	if n := len(upstream(t, e)); n != 6 {
		t.Errorf("route stored %d, want 6", n)
	}
}
