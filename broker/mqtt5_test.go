package broker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/broker/route"
	"github.com/outpost-edge/outpost/store/queue"
)

// freePolicy lets every identity publish and subscribe under free/.
const freePolicy = `{"mqttBroker":{"authorizations":[
	{"identities":["{{iot:identity}}"],"allow":[{"operations":["mqtt:publish","mqtt:subscribe"],"resources":["free/#"]}]}]}}`

func newFreeEnv(t *testing.T, change func(*Options)) *env {
	t.Helper()
	p, err := ParsePolicy([]byte(freePolicy))
	if err != nil {
		t.Fatal(err)
	}
	return newEnvWith(t, "", queue.Options{}, func(o *Options) {
		o.Policy = p
		if change != nil {
			change(o)
		}
	})
}

// v5conn is an MQTT 5 client with what it received.
type v5conn struct {
	*paho.Client
	connack *paho.Connack
	got     chan *paho.Publish
	disc    chan *paho.Disconnect
}

type v5opts struct {
	receiveMax, aliasMax uint16
	manualAck            bool
	problemInfo          bool   // Request Problem Information 1 (paho.golang sends 0)
	user, password       string // a generic client's; default the IoT Hub identity's user name and "pw"
	keep                 uint32 // session expiry interval, s
	resume               bool   // clean start false
	will                 *paho.WillMessage
}

// v5connect connects an MQTT 5 client as id; every PUBLISH it receives
// goes to got (acknowledged unless manualAck).
func (e *env) v5connect(id string, o v5opts) *v5conn {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	v := &v5conn{got: make(chan *paho.Publish, 100), disc: make(chan *paho.Disconnect, 1)}
	v.Client = paho.NewClient(paho.ClientConfig{
		Conn: conn, EnableManualAcknowledgment: o.manualAck,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(r paho.PublishReceived) (bool, error) {
			v.got <- r.Packet
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { v.disc <- d },
	})
	props := &paho.ConnectProperties{RequestProblemInfo: o.problemInfo}
	if o.keep > 0 {
		props.SessionExpiryInterval = &o.keep
	}
	if o.receiveMax > 0 {
		props.ReceiveMaximum = &o.receiveMax
	}
	if o.aliasMax > 0 {
		props.TopicAliasMaximum = &o.aliasMax
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if o.user == "" {
		o.user, o.password = "hub.example/"+id+"/?api-version=2021-04-12", "pw"
	}
	ca, err := v.Connect(ctx, &paho.Connect{
		ClientID: id, KeepAlive: 30, CleanStart: !o.resume, Properties: props, WillMessage: o.will,
		Username: o.user, UsernameFlag: true, Password: []byte(o.password), PasswordFlag: true,
	})
	if err != nil || ca.ReasonCode != 0 {
		e.t.Fatalf("connect %s: %v %+v", id, err, ca)
	}
	v.connack = ca
	e.t.Cleanup(func() { _ = v.Disconnect(&paho.Disconnect{}) })
	return v
}

// sub subscribes to filters at QoS 1 and returns the SUBACK's codes.
func (v *v5conn) sub(t *testing.T, filters ...string) []byte {
	t.Helper()
	s := &paho.Subscribe{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	return v.subscribe(t, s)
}

func (v *v5conn) subscribe(t *testing.T, s *paho.Subscribe) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := v.Subscribe(ctx, s)
	if sa == nil {
		t.Fatalf("subscribe: %v", err)
	}
	return sa.Reasons
}

// pub publishes and returns the reason code of its acknowledgement.
func (v *v5conn) pub(t *testing.T, p *paho.Publish) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := v.Publish(ctx, p)
	if r == nil {
		t.Fatalf("publish to %q: %v", p.Topic, err)
	}
	return r.ReasonCode
}

// next waits for the next message received.
func (v *v5conn) next(t *testing.T) *paho.Publish {
	t.Helper()
	select {
	case p := <-v.got:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no message received within 5 s")
		return nil
	}
}

func alias(n uint16) *paho.PublishProperties { return &paho.PublishProperties{TopicAlias: &n} }

// CONNACK tells MQTT 5 clients what the broker offers: QoS 2 (no Maximum
// QoS property), retained messages, wildcard and shared subscriptions,
// subscription identifiers, topic aliases, and its Receive Maximum.
func TestV5ConnackAdvertisesFeatures(t *testing.T) {
	e := newFreeEnv(t, func(o *Options) { o.MaxInflight = 100 })
	p := e.v5connect("dev1", v5opts{}).connack.Properties
	if p.MaximumQoS != nil || !p.RetainAvailable || !p.WildcardSubAvailable || !p.SharedSubAvailable || !p.SubIDAvailable {
		t.Errorf("CONNACK: maximum QoS %v, retain %v, wildcard %v, shared %v, subscription ids %v; want QoS 2 and all available",
			p.MaximumQoS, p.RetainAvailable, p.WildcardSubAvailable, p.SharedSubAvailable, p.SubIDAvailable)
	}
	if p.TopicAliasMaximum == nil || *p.TopicAliasMaximum == 0 || p.ReceiveMaximum == nil || *p.ReceiveMaximum != 100 {
		t.Errorf("CONNACK: topic alias maximum %v, receive maximum %v; want aliases and 100", deref(p.TopicAliasMaximum), deref(p.ReceiveMaximum))
	}
	if want := uint32(256<<10 + 64<<10); p.MaximumPacketSize == nil || *p.MaximumPacketSize != want {
		t.Errorf("CONNACK: maximum packet size %v, want %d (the payload limit and room for topic and properties)", deref(p.MaximumPacketSize), want)
	}
}

// An MQTT 5 publish that names its topic by alias only is authorized on
// the topic the alias stands for: telemetry is stored, free-topic
// messages delivered; and the check is made on that topic, so an alias
// set while the policy allowed its topic is refused once it no longer
// does (0x87).
func TestV5TopicAliasPublishes(t *testing.T) {
	e := newFreeEnv(t, nil)
	dev1, dev2 := e.v5connect("dev1", v5opts{}), e.v5connect("dev2", v5opts{})
	if codes := dev2.sub(t, "free/#"); codes[0] != 1 {
		t.Fatalf("subscribe free/#: %#x", codes)
	}
	for i, p := range []*paho.Publish{
		{Topic: "devices/dev1/messages/events/", QoS: 1, Payload: []byte("t1"), Properties: alias(1)},
		{QoS: 1, Payload: []byte("t2"), Properties: alias(1)},
		{Topic: "free/a", QoS: 1, Payload: []byte("f1"), Properties: alias(2)},
		{QoS: 1, Payload: []byte("f2"), Properties: alias(2)},
	} {
		if code := dev1.pub(t, p); code != 0 {
			t.Fatalf("publish %d (%s): reason %#x, want 0", i, p.Payload, code)
		}
	}
	if d := e.queue(QueueName("$upstream", route.DefaultPriority)).Stats().Depth; d != 2 {
		t.Errorf("upstream queue holds %d messages, want both telemetry messages", d)
	}
	for _, want := range []string{"f1", "f2"} {
		if p := dev2.next(t); string(p.Payload) != want || p.Topic != "free/a" {
			t.Fatalf("dev2 received %q on %q, want %q on free/a", p.Payload, p.Topic, want)
		}
	}
	e.b.SetPolicy(&Policy{}) // free topics closed: alias 2 still names free/a
	denied := e.b.Stats().Denied.Load()
	if code := dev1.pub(t, &paho.Publish{QoS: 1, Payload: []byte("f3"), Properties: alias(2)}); code != 0x87 {
		t.Fatalf("alias-only publish to a topic no longer allowed: reason %#x, want 0x87", code)
	}
	if n := e.b.Stats().Denied.Load(); n != denied+1 {
		t.Errorf("denied %d, want %d", n, denied+1)
	}
	select {
	case p := <-dev2.got:
		t.Fatalf("dev2 received %q after the policy closed free/", p.Payload)
	default:
	}
}

// A client that allows topic aliases (Topic Alias Maximum) gets repeated
// topics by alias: the first message sets it, the next names only it.
func TestV5OutboundTopicAliases(t *testing.T) {
	e := newFreeEnv(t, nil)
	dev1, dev2 := e.v5connect("dev1", v5opts{}), e.v5connect("dev2", v5opts{aliasMax: 5})
	dev2.sub(t, "free/#")
	for _, b := range []string{"1", "2"} {
		dev1.pub(t, &paho.Publish{Topic: "free/long/topic/name", QoS: 1, Payload: []byte(b)})
	}
	first, second := dev2.next(t), dev2.next(t)
	if first.Topic != "free/long/topic/name" || first.Properties.TopicAlias == nil {
		t.Fatalf("first message: topic %q alias %v, want the topic and an alias", first.Topic, first.Properties.TopicAlias)
	}
	if second.Topic != "" || second.Properties.TopicAlias == nil || *second.Properties.TopicAlias != *first.Properties.TopicAlias {
		t.Fatalf("second message: topic %q alias %v, want only alias %d", second.Topic, second.Properties.TopicAlias, *first.Properties.TopicAlias)
	}
}

// $share/<group>/<filter> shares the messages of a free topic between the
// group's members, each message to one; the filter inside is what the
// policy and the IoT Hub ACL check, so a share group opens nothing.
func TestV5SharedSubscriptions(t *testing.T) {
	e := newFreeEnv(t, nil)
	pub, m1, m2 := e.v5connect(edgeID+"/a", v5opts{}), e.v5connect("dev1", v5opts{}), e.v5connect("dev2", v5opts{})
	for _, m := range []*v5conn{m1, m2} {
		if codes := m.sub(t, "$share/g/free/load"); codes[0] != 1 {
			t.Fatalf("subscribe $share/g/free/load: %#x", codes)
		}
	}
	codes := m1.sub(t, "$share/g/#", "$share/g/devices/dev1/messages/devicebound/#", "$share/g/other/x", "$SHARE/g/+/x")
	for i, c := range codes {
		if c != 0x87 {
			t.Errorf("filter %d: SUBACK %#x, want 0x87 (not authorized)", i, c)
		}
	}
	const n = 40
	for i := range n {
		if code := pub.pub(t, &paho.Publish{Topic: "free/load", QoS: 1, Payload: []byte{byte(i)}}); code != 0 {
			t.Fatalf("publish %d: %#x", i, code)
		}
	}
	// Telemetry and a C2D message must not reach $share/g/# (refused).
	pub.pub(t, &paho.Publish{Topic: "devices/" + edgeID + "/modules/a/messages/events/", QoS: 1, Payload: []byte("tel")})
	if err := e.b.SendC2D(context.Background(), "dev1", queue.Message{Body: []byte("c2d")}); err != nil {
		t.Fatal(err)
	}
	seen := map[byte]int{}
	got := [2]int{}
	for len(seen) < n {
		select {
		case p := <-m1.got:
			seen[p.Payload[0]]++
			got[0]++
		case p := <-m2.got:
			seen[p.Payload[0]]++
			got[1]++
		case <-time.After(5 * time.Second):
			t.Fatalf("received %d distinct messages of %d", len(seen), n)
		}
	}
	if got[0]+got[1] != n || got[0] == 0 || got[1] == 0 {
		t.Fatalf("members received %v of %d messages: want each message once, to both members", got, n)
	}
	for _, m := range []*v5conn{m1, m2} {
		select {
		case p := <-m.got:
			t.Fatalf("a member received %q more", p.Payload)
		default:
		}
	}
}

// QoS 2 and retained messages work on free topics: exactly-once
// handshake to the end, and a later subscriber gets the retained message.
func TestV5QoS2AndRetainOnFreeTopics(t *testing.T) {
	e := newFreeEnv(t, nil)
	dev1, dev2 := e.v5connect("dev1", v5opts{}), e.v5connect("dev2", v5opts{})
	dev2.subscribe(t, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "free/q", QoS: 2}}})
	if code := dev1.pub(t, &paho.Publish{Topic: "free/q", QoS: 2, Payload: []byte("x")}); code != 0 {
		t.Fatalf("QoS 2 publish: PUBCOMP reason %#x", code)
	}
	if p := dev2.next(t); p.QoS != 2 || string(p.Payload) != "x" {
		t.Fatalf("received %q at QoS %d, want x at QoS 2", p.Payload, p.QoS)
	}
	if code := dev1.pub(t, &paho.Publish{Topic: "free/r", QoS: 2, Retain: true, Payload: []byte("kept")}); code != 0 {
		t.Fatalf("retained QoS 2 publish: %#x", code)
	}
	late := e.v5connect(edgeID+"/a", v5opts{})
	late.sub(t, "free/r")
	if p := late.next(t); !p.Retain || string(p.Payload) != "kept" {
		t.Fatalf("late subscriber got %q retain=%v, want the retained message", p.Payload, p.Retain)
	}
}

// IoT Hub topics refuse QoS 2 as IoT Hub does: the publisher is
// disconnected (MQTT 5: DISCONNECT 0x9B), nothing is stored, the refusal
// is counted; a QoS 2 subscription to an IoT Hub topic is granted QoS 1.
func TestV5QoS2OnIoTHubTopicRefused(t *testing.T) {
	e := newFreeEnv(t, nil)
	dev1 := e.v5connect("dev1", v5opts{})
	codes := dev1.subscribe(t, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "devices/dev1/messages/devicebound/#", QoS: 2}}})
	if codes[0] != 1 {
		t.Errorf("QoS 2 subscription to C2D granted %#x, want QoS 1", codes[0])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	r, err := dev1.Publish(ctx, &paho.Publish{Topic: "devices/dev1/messages/events/", QoS: 2, Payload: []byte("x")})
	if err == nil && r != nil && r.ReasonCode < 0x80 {
		t.Fatalf("QoS 2 telemetry accepted: %+v", r)
	}
	select {
	case d := <-dev1.disc:
		if d.ReasonCode != 0x9B {
			t.Fatalf("DISCONNECT %#x, want 0x9B (QoS not supported)", d.ReasonCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no DISCONNECT after a QoS 2 publish to an IoT Hub topic")
	}
	v3 := e.client("dev2", "pw")
	v3.Publish("devices/dev2/messages/events/", 2, false, "x").WaitTimeout(time.Second)
	expectDisconnected(t, v3, "MQTT 3.1.1 client publishing QoS 2 telemetry stays connected")
	if d := e.queue(QueueName("$upstream", route.DefaultPriority)).Stats().Depth; d != 0 {
		t.Errorf("upstream queue holds %d messages, want none", d)
	}
	if n := e.b.Stats().RefusedBy[ReasonQoS].Load(); n != 2 {
		t.Errorf("refused for reason qos = %d, want 2", n)
	}
}

// A message's own expiry interval holds on free topics: a retained
// message is sent with the time it has left, and not at all once expired.
func TestV5MessageExpiry(t *testing.T) {
	e := newFreeEnv(t, nil)
	dev1 := e.v5connect("dev1", v5opts{})
	exp := uint32(2)
	dev1.pub(t, &paho.Publish{Topic: "free/exp", QoS: 1, Retain: true, Payload: []byte("short"),
		Properties: &paho.PublishProperties{MessageExpiry: &exp}})
	started := time.Now()
	waitFor(t, "a second of the expiry to pass", func() bool { return time.Since(started) > 1100*time.Millisecond })
	dev2 := e.v5connect("dev2", v5opts{})
	dev2.sub(t, "free/exp")
	p := dev2.next(t)
	if p.Properties.MessageExpiry == nil || *p.Properties.MessageExpiry >= exp {
		t.Fatalf("retained message sent with expiry %v, want less than %d s left", p.Properties.MessageExpiry, exp)
	}
	waitFor(t, "the retained message to expire", func() bool {
		_, held := e.b.srv.Topics.Retained.Get("free/exp")
		return !held
	})
	late := e.v5connect(edgeID+"/a", v5opts{})
	late.sub(t, "free/exp", "free/marker")
	dev1.pub(t, &paho.Publish{Topic: "free/marker", QoS: 1, Payload: []byte("marker")})
	// Retained messages are queued to a subscriber before anything
	// published after its SUBSCRIBE: the marker comes first only if no
	// expired message was sent.
	if p := late.next(t); string(p.Payload) != "marker" {
		t.Fatalf("received %q after its expiry", p.Payload)
	}
}

// A message queued for an offline session expires with the sender's
// interval: past it, it is not sent when the client comes back; one still
// valid is sent with the time it has left.
func TestV5QueuedMessageExpiry(t *testing.T) {
	e := newFreeEnv(t, nil)
	dev2 := e.v5connect("dev2", v5opts{keep: 300})
	dev2.sub(t, "free/q")
	if err := dev2.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dev2's connection to end", func() bool { return e.b.sessionOf("dev2") == nil })
	dev1 := e.v5connect("dev1", v5opts{})
	short, long := uint32(1), uint32(300)
	dev1.pub(t, &paho.Publish{Topic: "free/q", QoS: 1, Payload: []byte("short"), Properties: &paho.PublishProperties{MessageExpiry: &short}})
	dev1.pub(t, &paho.Publish{Topic: "free/q", QoS: 1, Payload: []byte("long"), Properties: &paho.PublishProperties{MessageExpiry: &long}})
	// mochi acknowledges a publish before it queues it to subscribers.
	waitFor(t, "the long message queued and the short one expired", func() bool {
		cl, ok := e.b.srv.Clients.Get("dev2")
		if !ok {
			return false
		}
		held := cl.State.Inflight.GetAll(false)
		return len(held) == 1 && string(held[0].Payload) == "long"
	})
	back := e.v5connect("dev2", v5opts{keep: 300, resume: true})
	p := back.next(t)
	if string(p.Payload) != "long" || p.Properties.MessageExpiry == nil || *p.Properties.MessageExpiry > long {
		t.Fatalf("received %q with expiry %v, want long with at most %d s left", p.Payload, deref(p.Properties.MessageExpiry), long)
	}
}

// On IoT Hub topics MQTT 5 properties map to the message's properties
// both ways: inbound user properties, content type and correlation data
// become application properties, contentType and correlationId; C2D
// messages carry them back as MQTT 5 properties (the bag stays in the
// topic) with the expiry left and the subscription's identifier.
func TestV5PropertiesOnIoTHubTopics(t *testing.T) {
	e := newFreeEnv(t, nil)
	dev1 := e.v5connect("dev1", v5opts{})
	if code := dev1.pub(t, &paho.Publish{Topic: "devices/dev1/messages/events/", QoS: 1, Payload: []byte("{}"),
		Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "unit", Value: "C"}},
			ContentType: "application/json", CorrelationData: []byte("req-1")}}); code != 0 {
		t.Fatalf("telemetry: %#x", code)
	}
	msgs, _ := e.queue(QueueName("$upstream", route.DefaultPriority)).Read(0, 10)
	if len(msgs) != 1 || msgs[0].Props["unit"] != "C" || msgs[0].Sys["contentType"] != "application/json" || msgs[0].Sys["correlationId"] != "req-1" {
		t.Fatalf("stored %+v", msgs)
	}
	id := 5
	dev1.subscribe(t, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "devices/dev1/messages/devicebound/#", QoS: 1}},
		Properties: &paho.SubscribeProperties{SubscriptionIdentifier: &id}})
	err := e.b.SendC2D(context.Background(), "dev1", queue.Message{Body: []byte("cmd"), TTL: time.Hour,
		Props: map[string]string{"b": "2", "a": "1"}, Sys: map[string]string{"contentType": "text/plain", "correlationId": "c-9"}})
	if err != nil {
		t.Fatal(err)
	}
	p := dev1.next(t)
	pr := p.Properties
	if len(pr.User) != 2 || pr.User[0] != (paho.UserProperty{Key: "a", Value: "1"}) || pr.User[1] != (paho.UserProperty{Key: "b", Value: "2"}) {
		t.Errorf("user properties %+v, want a=1, b=2", pr.User)
	}
	if pr.ContentType != "text/plain" || string(pr.CorrelationData) != "c-9" {
		t.Errorf("content type %q correlation data %q", pr.ContentType, pr.CorrelationData)
	}
	if pr.MessageExpiry == nil || *pr.MessageExpiry == 0 || *pr.MessageExpiry > 3600 {
		t.Errorf("message expiry %v, want the hour left", pr.MessageExpiry)
	}
	if pr.SubscriptionIdentifier == nil || *pr.SubscriptionIdentifier != id {
		t.Errorf("subscription identifier %v, want %d", deref(pr.SubscriptionIdentifier), id)
	}
	if want := "devices/dev1/messages/devicebound/"; len(p.Topic) <= len(want) || p.Topic[:len(want)] != want {
		t.Errorf("topic %q", p.Topic)
	}
}

// Request/response on free topics: the response topic, correlation data
// and user properties reach the responder as sent, and its answer the
// requester.
func TestV5RequestResponse(t *testing.T) {
	e := newFreeEnv(t, nil)
	req, resp := e.v5connect("dev1", v5opts{problemInfo: true}), e.v5connect("dev2", v5opts{})
	req.sub(t, "free/resp/dev1")
	resp.sub(t, "free/req")
	ack, err := req.Publish(context.Background(), &paho.Publish{Topic: "free/req", QoS: 1, Payload: []byte("ask"), Properties: &paho.PublishProperties{
		ResponseTopic: "free/resp/dev1", CorrelationData: []byte{0, 1, 2}, User: paho.UserProperties{{Key: "k", Value: "v"}}}})
	if err != nil || ack.ReasonCode != 0 {
		t.Fatalf("request: %v %+v", err, ack)
	}
	if ack.Properties != nil && len(ack.Properties.User) > 0 {
		t.Errorf("the PUBACK echoes the request's user properties %+v", ack.Properties.User)
	}
	in := resp.next(t)
	pr := in.Properties
	if pr.ResponseTopic != "free/resp/dev1" || string(pr.CorrelationData) != "\x00\x01\x02" || len(pr.User) != 1 || pr.User[0].Value != "v" {
		t.Fatalf("request properties %+v", pr)
	}
	resp.pub(t, &paho.Publish{Topic: pr.ResponseTopic, QoS: 1, Payload: []byte("answer"),
		Properties: &paho.PublishProperties{CorrelationData: pr.CorrelationData}})
	if out := req.next(t); string(out.Payload) != "answer" || string(out.Properties.CorrelationData) != "\x00\x01\x02" {
		t.Fatalf("response %q correlation %q", out.Payload, out.Properties.CorrelationData)
	}
}

// A client's Receive Maximum bounds the messages sent to it
// unacknowledged, by our deliverer (C2D, module inputs) and by mochi's
// fan-out (free topics): with 2, never a third before it acknowledges.
func TestV5ReceiveMaximumBoundsDeliveries(t *testing.T) {
	for _, free := range []bool{false, true} {
		e := newFreeEnv(t, nil)
		dev1 := e.v5connect("dev1", v5opts{receiveMax: 2, manualAck: true})
		if free {
			dev1.sub(t, "free/#")
			pub := e.v5connect("dev2", v5opts{})
			for i := range 6 {
				pub.pub(t, &paho.Publish{Topic: "free/x", QoS: 1, Payload: []byte{byte('0' + i)}})
			}
		} else {
			for i := range 6 {
				if err := e.b.SendC2D(context.Background(), "dev1", queue.Message{Body: []byte{byte('0' + i)}}); err != nil {
					t.Fatal(err)
				}
			}
			dev1.sub(t, "devices/dev1/messages/devicebound/#")
		}
		receiveAckingInTwos(t, dev1, 6)
	}
}

// receiveAckingInTwos receives n distinct messages, acknowledging them
// when no more come, and fails if more than 2 are ever unacknowledged or
// one comes twice.
func receiveAckingInTwos(t *testing.T, c *v5conn, n int) {
	t.Helper()
	var unacked []*paho.Publish
	seen := map[string]bool{}
	for received := 0; received < n; {
		select {
		case p := <-c.got:
			if seen[string(p.Payload)] {
				t.Fatalf("message %q received twice", p.Payload)
			}
			seen[string(p.Payload)] = true
			received++
			unacked = append(unacked, p)
			if len(unacked) > 2 {
				t.Fatalf("%d messages unacknowledged with Receive Maximum 2", len(unacked))
			}
		case <-time.After(300 * time.Millisecond): // the window is full: acknowledge it
			if len(unacked) == 0 {
				t.Fatalf("received %d of %d, nothing more", received, n)
			}
			for _, p := range unacked {
				if err := c.Ack(p); err != nil {
					t.Fatal(err)
				}
			}
			unacked = nil
		}
	}
}

// Subscription identifiers come back on the messages their subscription
// matched.
func TestV5SubscriptionIdentifiers(t *testing.T) {
	e := newFreeEnv(t, nil)
	dev1, dev2 := e.v5connect("dev1", v5opts{}), e.v5connect("dev2", v5opts{})
	id := 7
	dev2.subscribe(t, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "free/a", QoS: 1}},
		Properties: &paho.SubscribeProperties{SubscriptionIdentifier: &id}})
	dev2.sub(t, "free/b")
	dev1.pub(t, &paho.Publish{Topic: "free/a", QoS: 1, Payload: []byte("a")})
	dev1.pub(t, &paho.Publish{Topic: "free/b", QoS: 1, Payload: []byte("b")})
	if p := dev2.next(t); p.Properties.SubscriptionIdentifier == nil || *p.Properties.SubscriptionIdentifier != 7 {
		t.Fatalf("message on free/a: subscription identifier %v, want 7", p.Properties.SubscriptionIdentifier)
	}
	if p := dev2.next(t); p.Properties.SubscriptionIdentifier != nil {
		t.Fatalf("message on free/b: subscription identifier %d, want none", *p.Properties.SubscriptionIdentifier)
	}
}

// The subscription cap counts shared subscriptions too, and a filter past
// it gets SUBACK 0x97 (quota exceeded).
func TestV5SubscriptionCapQuotaExceeded(t *testing.T) {
	e := newFreeEnv(t, func(o *Options) { o.MaxSubscriptions = 2 })
	dev1 := e.v5connect("dev1", v5opts{})
	codes := dev1.sub(t, "$share/g/free/a", "free/b", "free/c")
	if len(codes) != 3 || codes[0] != 1 || codes[1] != 1 || codes[2] != 0x97 {
		t.Fatalf("SUBACK %#x, want [1 1 0x97]", codes)
	}
	if n := e.b.Stats().SubRefused.Load(); n != 1 {
		t.Fatalf("subscriptions refused %d, want 1", n)
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// A will is held to what its client may publish: one on a topic the
// policy does not let it publish to is never delivered, and counted.
func TestV5WillOutsideThePolicyRefused(t *testing.T) {
	p, err := ParsePolicy([]byte(`{"mqttBroker":{"authorizations":[
		{"identities":["{{iot:identity}}"],"allow":[{"operations":["mqtt:publish","mqtt:subscribe"],"resources":["free/#"]}]},
		{"identities":["dev2"],"allow":[{"operations":["mqtt:subscribe"],"resources":["other/#"]}]}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, "", queue.Options{}, func(o *Options) { o.Policy = p })
	dev2 := e.v5connect("dev2", v5opts{})
	dev2.sub(t, "free/#", "other/#")
	for _, will := range []string{"free/will", "other/will"} {
		dev1 := e.v5connect("dev1", v5opts{will: &paho.WillMessage{Topic: will, QoS: 1, Payload: []byte(will)}})
		waitFor(t, "dev1's session", func() bool { return e.b.sessionOf("dev1") != nil })
		dev1.TerminateConnectionForTest()
		// mochi forgets a clean session after sending its will.
		waitFor(t, "dev1's session to end", func() bool {
			_, ok := e.b.srv.Clients.Get("dev1")
			return !ok
		})
	}
	pub := e.v5connect(edgeID+"/a", v5opts{})
	pub.pub(t, &paho.Publish{Topic: "free/marker", QoS: 1, Payload: []byte("marker")})
	for _, want := range []string{"free/will", "marker"} {
		if p := dev2.next(t); string(p.Payload) != want {
			t.Fatalf("received %q, want %q (the will dev1 may not publish comes before the marker, or not at all)", p.Payload, want)
		}
	}
	if n := e.b.Stats().Denied.Load(); n != 1 {
		t.Errorf("denied %d, want the one will", n)
	}
}

// A client that gets both queued deliveries (C2D, module inputs) and
// free-topic messages from mochi sees distinct packet ids in flight: a
// PUBACK acknowledges one message only.
func TestDeliveriesAndFreeTopicsUseDistinctPacketIDs(t *testing.T) {
	e := newFreeEnv(t, nil)
	dev1 := e.v5connect("dev1", v5opts{manualAck: true})
	dev1.sub(t, "free/#", "devices/dev1/messages/devicebound/#")
	pub := e.v5connect("dev2", v5opts{})
	ids := map[uint16]string{}
	for i := range 3 {
		if err := e.b.SendC2D(context.Background(), "dev1", queue.Message{Body: []byte{'c', byte('0' + i)}}); err != nil {
			t.Fatal(err)
		}
		pub.pub(t, &paho.Publish{Topic: "free/x", QoS: 1, Payload: []byte{'f', byte('0' + i)}})
	}
	for range 6 {
		p := dev1.next(t)
		if other, dup := ids[p.PacketID]; dup {
			t.Fatalf("packet id %d carries both %q and %q unacknowledged", p.PacketID, other, p.Payload)
		}
		ids[p.PacketID] = string(p.Payload)
	}
}

// The broker's Receive Maximum (MaxInflight) holds for MQTT 5 clients on
// both kinds of topic: a client that leaves more publishes unacknowledged
// gets DISCONNECT 0x93 (receive maximum exceeded).
func TestV5ServerReceiveMaximumEnforced(t *testing.T) {
	for _, tc := range []struct {
		topic string
		qos   byte
	}{
		{"devices/dev1/messages/events/", 1}, // stored before its PUBACK: a burst outruns the store
		{"free/q", 2},                        // mochi's: PUBREC sent, the client never releases them
	} {
		e := newFreeEnv(t, func(o *Options) { o.MaxInflight = 2 })
		c := dialRaw(t, e.addr)
		var buf bytes.Buffer
		connect := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
			Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "dev1", Clean: true, Keepalive: 30,
				UsernameFlag: true, Username: []byte("hub.example/dev1/?api-version=2021-04-12"), PasswordFlag: true, Password: []byte("pw")}}
		if err := connect.ConnectEncode(&buf); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 500; i++ {
			pub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: tc.qos}, ProtocolVersion: 5,
				TopicName: tc.topic, PacketID: uint16(i), Payload: []byte("x")}
			if err := pub.PublishEncode(&buf); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.Write(buf.Bytes()); err != nil {
			t.Fatal(err)
		}
		if code := disconnectReason(t, c); code != 0x93 {
			t.Errorf("%s at QoS %d: DISCONNECT reason %#x, want 0x93", tc.topic, tc.qos, code)
		}
	}
}

// disconnectReason reads what the broker sends until it closes the
// connection and returns the reason code of its DISCONNECT.
func disconnectReason(t *testing.T, c net.Conn) byte {
	t.Helper()
	return readUntilClosed(t, c, func(byte, []byte) {})
}

// readUntilClosed reads the packets the broker sends until it closes the
// connection, passing each to seen (its type and body), and returns the
// reason code of the DISCONNECT that must end them.
func readUntilClosed(t *testing.T, c net.Conn, seen func(typ byte, body []byte)) byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	all, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("reading until the broker closes: %v", err)
	}
	for len(all) > 1 {
		typ, n, size := all[0]>>4, 1, 0
		for shift := 0; n < len(all); shift += 7 {
			b := all[n]
			n++
			size |= int(b&0x7f) << shift
			if b&0x80 == 0 {
				break
			}
		}
		if n+size > len(all) {
			break
		}
		if typ == packets.Disconnect && size > 0 {
			return all[n]
		}
		seen(typ, all[n:n+size])
		all = all[n+size:]
	}
	t.Fatal("no DISCONNECT before the connection closed")
	return 0
}

// A generic client (a local account) has the same MQTT 5 features on the
// free topics its account is granted, checked by account: alias-only
// publishes on the resolved topic, shared subscriptions on their filter
// (never IoT Hub topics), its will on what it may publish.
func TestV5GenericClient(t *testing.T) {
	e := newGenericEnv(t, "off")
	plc := v5opts{user: "plc1", password: "s3cret"}
	sub := e.v5connect("plc1-sub", plc)
	if codes := sub.sub(t, "$share/g/factory/#", "$share/g/devices/dev1/messages/devicebound/#", "$share/g/open/#"); codes[0] != 1 || codes[1] != 0x87 || codes[2] != 0x87 {
		t.Fatalf("SUBACK %#x, want [1 0x87 0x87]", codes)
	}
	pub := e.v5connect("plc1-pub", plc)
	for i, p := range []*paho.Publish{
		{Topic: "factory/line1/temp", QoS: 1, Payload: []byte("1"), Properties: alias(1)},
		{QoS: 1, Payload: []byte("2"), Properties: alias(1)},
	} {
		if code := pub.pub(t, p); code != 0 {
			t.Fatalf("publish %d: %#x", i, code)
		}
	}
	for _, want := range []string{"1", "2"} {
		if p := sub.next(t); string(p.Payload) != want || p.Topic != "factory/line1/temp" {
			t.Fatalf("received %q on %q, want %q on factory/line1/temp", p.Payload, p.Topic, want)
		}
	}
	if code := pub.pub(t, &paho.Publish{Topic: "factory/secret", QoS: 1, Payload: []byte("s"), Properties: alias(2)}); code != 0x87 {
		t.Fatalf("publish to factory/secret: %#x, want 0x87", code)
	}
	if code := pub.pub(t, &paho.Publish{QoS: 1, Payload: []byte("s"), Properties: alias(2)}); code != 0x87 {
		t.Fatalf("alias-only publish after a refused alias: %#x, want 0x87", code)
	}
	willed := plc
	willed.will = &paho.WillMessage{Topic: "factory/secret", QoS: 1, Payload: []byte("will")}
	w := e.v5connect("plc1-will", willed)
	waitFor(t, "plc1-will's session", func() bool { return e.b.sessionOf("plc1-will") != nil })
	denied := e.b.Stats().Denied.Load()
	w.TerminateConnectionForTest()
	waitFor(t, "the will refused", func() bool { return e.b.Stats().Denied.Load() == denied+1 })
}

// The QoS 2 refusal on an IoT Hub topic comes after the PUBACKs of the
// telemetry sent before it, which is stored: the client does not send it
// again.
func TestV5QoS2RefusalAfterEarlierPubacks(t *testing.T) {
	e := newFreeEnv(t, nil)
	c := dialRaw(t, e.addr)
	var buf bytes.Buffer
	connect := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "dev1", Clean: true, Keepalive: 30,
			UsernameFlag: true, Username: []byte("hub.example/dev1/?api-version=2021-04-12"), PasswordFlag: true, Password: []byte("pw")}}
	if err := connect.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	const n = 20
	for i := 1; i <= n+1; i++ {
		qos := byte(1)
		if i == n+1 {
			qos = 2
		}
		pub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos}, ProtocolVersion: 5,
			TopicName: "devices/dev1/messages/events/", PacketID: uint16(i), Payload: []byte("x")}
		if err := pub.PublishEncode(&buf); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	acked := 0
	code := readUntilClosed(t, c, func(typ byte, body []byte) {
		if typ == packets.Puback && len(body) >= 2 && (len(body) == 2 || body[2] == 0) {
			acked++
		}
	})
	if acked != n || code != 0x9B {
		t.Fatalf("%d PUBACKs then DISCONNECT %#x; want %d then 0x9B", acked, code, n)
	}
}
