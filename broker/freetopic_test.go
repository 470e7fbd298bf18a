package broker

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/broker/route"
	"github.com/outpost-edge/outpost/store/queue"
)

// factoryDoc lets every IoT identity and the local account "plc" (client
// ids plc-*, password pw) publish and subscribe on factory/# and office/#.
func factoryDoc(t testing.TB) []byte {
	return []byte(fmt.Sprintf(`{"mqttBroker":{"accounts":[{"name":"plc","passwordHash":%q,"clientIds":"plc-*"}],
	  "authorizations":[{"identities":["{{iot:identity}}","plc"],"allow":[
	    {"operations":["mqtt:publish","mqtt:subscribe"],"resources":["factory/#","office/#"]}]}]}}`, hash(t, "pw")))
}

const topicRoutes = `{"routes":{"up":"FROM /topics/factory/+/temp INTO $upstream"}}`

func newTopicEnv(t testing.TB, routes string, qopts queue.Options, change func(*Options)) *env {
	t.Helper()
	return newTopicEnvStart(t, routes, qopts, change, nil)
}

func newTopicEnvStart(t testing.TB, routes string, qopts queue.Options, change func(*Options), before func(*Broker)) *env {
	t.Helper()
	doc := factoryDoc(t)
	accts, err := ParseAccounts(doc)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePolicy(doc)
	if err != nil {
		t.Fatal(err)
	}
	return newEnvStart(t, routes, qopts, func(o *Options) {
		o.Policy, o.Accounts = p, accts
		if change != nil {
			change(o)
		}
	}, before)
}

func upstream(t *testing.T, e *env) []queue.Message {
	t.Helper()
	msgs, err := e.queue(QueueName("$upstream", route.DefaultPriority)).Read(0, 100)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// A routed QoS 1 publish on a free topic is in the upstream queue when its
// PUBACK arrives, as an event of the edge with the topic and the
// publisher; local subscribers still get it.
func TestFreeTopicRoutedStoredBeforePuback(t *testing.T) {
	e := newTopicEnv(t, topicRoutes, queue.Options{}, func(o *Options) {
		o.Generation = func(id string) string { return "g-" + id }
	})
	got := make(chan paho.Message, 4)
	sub := e.client("dev2", "pw")
	wait(t, sub.Subscribe("factory/#", 1, func(_ paho.Client, m paho.Message) { got <- m }))
	for id, account := range map[string]string{"dev1": "dev1", "plc-1": "plc"} {
		var c paho.Client
		if account == "plc" { // a generic client: a plain user name
			var err error
			if c, err = e.dial311(id, account, "pw"); err != nil {
				t.Fatal(err)
			}
		} else {
			c = e.client(id, "pw")
		}
		wait(t, c.Publish("factory/line1/temp", 1, false, `{"t":21}`))
		msgs := upstream(t, e)
		if len(msgs) == 0 {
			t.Fatalf("%s: PUBACK before the message was queued", id)
		}
		m := msgs[len(msgs)-1]
		if m.Source != "devices/"+edgeID || m.Sys[route.SysTopic] != "factory/line1/temp" || m.Sys[route.SysAccount] != account ||
			m.Sys["connectionDeviceId"] != edgeID || m.Sys[sysGeneration] != "g-"+edgeID || string(m.Body) != `{"t":21}` {
			t.Errorf("%s: stored %+v", id, m)
		}
		if r := recv(t, got); r.Topic() != "factory/line1/temp" || string(r.Payload()) != `{"t":21}` {
			t.Errorf("%s: subscriber got %s %s", id, r.Topic(), r.Payload())
		}
	}
	// Not taken by the route: acknowledged, delivered locally, not stored.
	c := e.client("dev1", "pw")
	wait(t, c.Publish("factory/line1/pressure", 1, false, "p"))
	if r := recv(t, got); r.Topic() != "factory/line1/pressure" {
		t.Errorf("subscriber got %s", r.Topic())
	}
	st := e.b.Stats()
	if n := len(upstream(t, e)); n != 2 || st.TopicReceived.Load() != 3 || st.TopicStored.Load() != 2 || st.TopicNoRoute.Load() != 1 || st.Received.Load() != 0 {
		t.Errorf("queued %d; topic received %d stored %d no route %d; telemetry received %d", n,
			st.TopicReceived.Load(), st.TopicStored.Load(), st.TopicNoRoute.Load(), st.Received.Load())
	}
}

// The default route (FROM /messages/* INTO $upstream) never takes a
// free-topic message (IoT Edge semantics).
func TestFreeTopicNotTakenByMessagesRoute(t *testing.T) {
	e := newTopicEnv(t, "", queue.Options{}, nil)
	c := e.client("dev1", "pw")
	wait(t, c.Publish("factory/line1/temp", 1, false, "x"))
	wait(t, c.Publish("devices/dev1/messages/events/", 1, false, "telemetry"))
	if msgs := upstream(t, e); len(msgs) != 1 || string(msgs[0].Body) != "telemetry" {
		t.Fatalf("upstream holds %+v, want only the telemetry", msgs)
	}
	if n := e.b.Stats().TopicNoRoute.Load(); n != 1 {
		t.Errorf("topic no route = %d, want 1", n)
	}
}

// A routed publish the queue refuses is never acknowledged as accepted:
// MQTT 5 gets PUBACK 0x97, MQTT 3.1.1 is disconnected; nothing is
// delivered as stored and the refusal is counted.
func TestFreeTopicRefusedWhenQueueFull(t *testing.T) {
	e := newTopicEnv(t, topicRoutes, queue.Options{TotalMaxCount: 1}, nil)
	c := e.v5client("dev1")
	pub := func(body string) byte {
		r, err := c.Publish(context.Background(), &paho5.Publish{Topic: "factory/l1/temp", QoS: 1, Payload: []byte(body)})
		if r == nil {
			t.Fatalf("publish %s: %v", body, err)
		}
		return r.ReasonCode
	}
	if rc := pub("one"); rc != 0 {
		t.Fatalf("first publish: reason %#x", rc)
	}
	if rc := pub("two"); rc != 0x97 {
		t.Fatalf("publish into a full queue: reason %#x, want 0x97", rc)
	}
	v3 := e.client("dev2", "pw")
	v3.Publish("factory/l1/temp", 1, false, "three").WaitTimeout(time.Second)
	expectDisconnected(t, v3, "MQTT 3.1.1 client not disconnected when the route's queue is full")
	if n := len(upstream(t, e)); n != 1 {
		t.Errorf("queued %d, want 1", n)
	}
	if n := e.b.Stats().RefusedBy[ReasonQuota].Load(); n != 2 {
		t.Errorf("refused for quota = %d, want 2", n)
	}
}

// v5dial connects an MQTT 5 client that hands what it receives to got.
func (e *env) v5dial(id string, got chan *paho5.Publish) *paho5.Client {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	c := paho5.NewClient(paho5.ClientConfig{Conn: conn, OnPublishReceived: []func(paho5.PublishReceived) (bool, error){
		func(r paho5.PublishReceived) (bool, error) { got <- r.Packet; return true, nil },
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho5.Connect{ClientID: id, KeepAlive: 30, CleanStart: true,
		Username: "hub.example/" + id + "/?api-version=2021-04-12", UsernameFlag: true, Password: []byte("pw"), PasswordFlag: true})
	if err != nil || ca.ReasonCode != 0 {
		e.t.Fatalf("connect %s: %v %+v", id, err, ca)
	}
	e.t.Cleanup(func() { _ = c.Disconnect(&paho5.Disconnect{}) })
	return c
}

func subscribe5(t *testing.T, c *paho5.Client, filter string, noLocal bool) {
	t.Helper()
	sa, err := c.Subscribe(context.Background(), &paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{{Topic: filter, QoS: 1, NoLocal: noLocal}}})
	if err != nil || sa.Reasons[0] >= 0x80 {
		t.Fatalf("subscribe %s: %v %+v", filter, err, sa)
	}
}

// MQTT 5 No Local holds for routed publishes (fanned out by the inline
// client with the publisher's id); user properties and the content type
// reach subscribers and the queue.
func TestFreeTopicNoLocalAndProperties(t *testing.T) {
	e := newTopicEnv(t, topicRoutes, queue.Options{}, nil)
	own, other := make(chan *paho5.Publish, 4), make(chan *paho5.Publish, 4)
	a := e.v5dial("dev1", own)
	b := e.v5dial("dev2", other)
	subscribe5(t, a, "factory/#", true)
	subscribe5(t, b, "factory/#", false)
	expiry := uint32(3600)
	props := &paho5.PublishProperties{ContentType: "application/json", User: paho5.UserProperties{{Key: "unit", Value: "C"}}, MessageExpiry: &expiry}
	for _, qos := range []byte{1, 0} {
		if _, err := a.Publish(context.Background(), &paho5.Publish{Topic: "factory/l1/temp", QoS: qos, Payload: []byte(`{"t":1}`), Properties: props}); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-other:
			if p.Topic != "factory/l1/temp" || p.Properties.ContentType != "application/json" || p.Properties.User.Get("unit") != "C" {
				t.Errorf("QoS %d: other subscriber got %+v", qos, p)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("QoS %d: the other subscriber got nothing", qos)
		}
	}
	// b's own publish reaches a: a's session works; a never saw its own.
	if _, err := b.Publish(context.Background(), &paho5.Publish{Topic: "factory/l2/temp", QoS: 1, Payload: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-own:
		if p.Topic != "factory/l2/temp" {
			t.Fatalf("No Local broken: dev1 received its own publish on %s", p.Topic)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("dev1 got nothing from dev2")
	}
	deadline := time.Now().Add(5 * time.Second) // the QoS 0 append is best effort: wait for it
	for len(upstream(t, e)) < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	msgs := upstream(t, e)
	if len(msgs) != 3 || msgs[0].Props["unit"] != "C" || msgs[0].Sys["contentType"] != "application/json" || msgs[0].TTL != time.Hour {
		t.Fatalf("queued %+v", msgs)
	}
}

// A retained routed publish is kept retained for later subscribers.
func TestFreeTopicRetained(t *testing.T) {
	e := newTopicEnvStart(t, topicRoutes, queue.Options{}, nil, func(b *Broker) {
		b.srv.Options.Capabilities.RetainAvailable = 1 // as when retained messages are on
	})
	c := e.client("dev1", "pw")
	wait(t, c.Publish("factory/l1/temp", 1, true, "21"))
	got := make(chan paho.Message, 1)
	late := e.client("dev2", "pw")
	wait(t, late.Subscribe("factory/+/temp", 1, func(_ paho.Client, m paho.Message) { got <- m }))
	if m := recv(t, got); !m.Retained() || string(m.Payload()) != "21" {
		t.Errorf("late subscriber got retained=%v %s", m.Retained(), m.Payload())
	}
	if n := len(upstream(t, e)); n != 1 {
		t.Errorf("queued %d, want 1", n)
	}
}

// A routed QoS 2 publish is durable before mochi answers PUBREC.
func TestFreeTopicQoS2(t *testing.T) {
	e := newTopicEnvStart(t, topicRoutes, queue.Options{TotalMaxCount: 1}, nil, func(b *Broker) {
		b.srv.Options.Capabilities.MaximumQos = 2 // as when QoS 2 is on
	})
	c := e.v5dial("dev1", make(chan *paho5.Publish, 1))
	r, err := c.Publish(context.Background(), &paho5.Publish{Topic: "factory/l1/temp", QoS: 2, Payload: []byte("q2")})
	if err != nil || r.ReasonCode != 0 {
		t.Fatalf("QoS 2 publish: %v %+v", err, r)
	}
	if msgs := upstream(t, e); len(msgs) != 1 || string(msgs[0].Body) != "q2" {
		t.Fatalf("queued %+v", msgs)
	}
	// The queue is full now: the refusal is the PUBREC's reason code.
	r, err = c.Publish(context.Background(), &paho5.Publish{Topic: "factory/l1/temp", QoS: 2, Payload: []byte("q2b")})
	if r == nil || r.ReasonCode != 0x97 {
		t.Fatalf("QoS 2 publish into a full queue: %v %+v, want PUBREC 0x97", err, r)
	}
	if n := e.b.Stats().RefusedBy[ReasonQuota].Load(); n != 1 {
		t.Errorf("refused for quota = %d, want 1", n)
	}
}

// PUBACKs come in the order of the PUBLISH packets, whatever mix of
// telemetry, routed and unrouted free topics the client sends.
func TestFreeTopicPubackOrder(t *testing.T) {
	e := newTopicEnv(t, topicRoutes, queue.Options{}, nil)
	c := dialRaw(t, e.addr)
	var buf bytes.Buffer
	connect := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "dev1", Clean: true, Keepalive: 30,
			UsernameFlag: true, Username: []byte("hub.example/dev1/?api-version=2021-04-12"), PasswordFlag: true, Password: []byte("pw")}}
	if err := connect.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	topics := []string{"devices/dev1/messages/events/", "factory/l1/temp", "factory/l1/pressure"}
	const n = 300
	for i := 1; i <= n; i++ {
		pub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: 4,
			TopicName: topics[i%len(topics)], PacketID: uint16(i), Payload: []byte("x")}
		if err := pub.PublishEncode(&buf); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if _, err := io.ReadFull(r, make([]byte, 4)); err != nil { // CONNACK
		t.Fatal(err)
	}
	for want := 1; want <= n; want++ {
		ack := make([]byte, 4)
		if _, err := io.ReadFull(r, ack); err != nil {
			t.Fatalf("PUBACK %d: %v", want, err)
		}
		if ack[0] != 0x40 || ack[1] != 2 {
			t.Fatalf("packet % x, want a PUBACK", ack)
		}
		if pid := int(ack[2])<<8 | int(ack[3]); pid != want {
			t.Fatalf("PUBACK for %d, want %d: out of order", pid, want)
		}
	}
}
