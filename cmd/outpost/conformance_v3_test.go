package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sort"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// v3Checks: the MQTT 3.1.1 behaviours of the Paho suite's client_test.py,
// with paho.mqtt.golang (and raw packets where a library client cannot
// misbehave on purpose).
var v3Checks = []conformanceCheck{
	{"basic", v3Basic},
	{"retained_messages", v3Retained},
	{"will_message", v3Will},
	{"zero_length_clientid", v3ZeroLengthClientID},
	{"offline_message_queueing", v3OfflineQueueing},
	{"overlapping_subscriptions", v3Overlapping},
	{"keepalive", v3Keepalive},
	{"redelivery_on_reconnect", v3Redelivery},
	{"subscribe_failure", v3SubscribeFailure},
	{"dollar_topics", v3DollarTopics},
	{"unsubscribe", v3Unsubscribe},
}

const confWait = 5 * time.Second

// v3Client is a paho.mqtt.golang client whose received messages go to msgs.
type v3Client struct {
	mqtt.Client
	msgs chan mqtt.Message
	mu   sync.Mutex
	conn net.Conn
}

type v3Options struct {
	clean     bool
	keepAlive time.Duration // 0: 30s
	willTopic string
	willBody  string
	noAutoAck bool
}

// v3Connect connects id to b; it returns the client and the CONNACK's
// session present flag.
func v3Connect(b confBroker, id string, o v3Options) (*v3Client, bool, error) {
	c := &v3Client{msgs: make(chan mqtt.Message, 100)}
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + b.addr).SetClientID(id).SetCleanSession(o.clean).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(confWait).
		SetKeepAlive(30 * time.Second).SetAutoAckDisabled(o.noAutoAck).SetOrderMatters(false).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { c.msgs <- m })
	if o.keepAlive > 0 {
		opts.SetKeepAlive(o.keepAlive)
	}
	if o.willTopic != "" {
		opts.SetWill(o.willTopic, o.willBody, 1, false)
	}
	opts.SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
		conn, err := net.DialTimeout("tcp", u.Host, confWait)
		c.mu.Lock()
		c.conn = conn
		c.mu.Unlock()
		return conn, err
	})
	c.Client = mqtt.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(confWait) {
		return nil, false, fmt.Errorf("connect %q: no CONNACK in %v", id, confWait)
	}
	if err := tok.Error(); err != nil {
		return nil, false, fmt.Errorf("connect %q: %w", id, err)
	}
	return c, tok.(*mqtt.ConnectToken).SessionPresent(), nil
}

func waitToken(what string, tok mqtt.Token) error {
	if !tok.WaitTimeout(confWait) {
		return fmt.Errorf("%s: no answer in %v", what, confWait)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// sub subscribes to filters at qos; it returns the granted QoS of each.
func (c *v3Client) sub(qos byte, filters ...string) ([]byte, error) {
	m := map[string]byte{}
	for _, f := range filters {
		m[f] = qos
	}
	tok := c.SubscribeMultiple(m, nil)
	if err := waitToken(fmt.Sprintf("subscribe %v", filters), tok); err != nil {
		return nil, err
	}
	res := tok.(*mqtt.SubscribeToken).Result()
	granted := make([]byte, len(filters))
	for i, f := range filters {
		granted[i] = res[f]
	}
	return granted, nil
}

func (c *v3Client) subOK(qos byte, filters ...string) error {
	granted, err := c.sub(qos, filters...)
	for i, g := range granted {
		if g >= 0x80 {
			return fmt.Errorf("subscribe %s refused (SUBACK %#x)", filters[i], g)
		}
	}
	return err
}

func (c *v3Client) pub(topic string, qos byte, retain bool, body string) error {
	return waitToken(fmt.Sprintf("publish QoS %d to %s", qos, topic), c.Publish(topic, qos, retain, body))
}

func (c *v3Client) close() { c.Disconnect(50) }

// kill closes the connection without DISCONNECT (a crashed client).
func (c *v3Client) kill() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		_ = c.conn.Close()
	}
}

// collect receives messages until it has n or within passes; then for
// settle more, to see extra ones.
func collect(ch chan mqtt.Message, n int, within, settle time.Duration) []mqtt.Message {
	var got []mqtt.Message
	timeout := time.After(within)
	for len(got) < n {
		select {
		case m := <-ch:
			got = append(got, m)
		case <-timeout:
			return got
		}
	}
	extra := time.After(settle)
	for {
		select {
		case m := <-ch:
			got = append(got, m)
		case <-extra:
			return got
		}
	}
}

// qosSet lists the QoS of msgs, sorted.
func qosSet(msgs []mqtt.Message) string {
	qos := make([]int, len(msgs))
	for i, m := range msgs {
		qos[i] = int(m.Qos())
	}
	sort.Ints(qos)
	return fmt.Sprint(qos)
}

func describe3(msgs []mqtt.Message) string {
	s := make([]string, len(msgs))
	for i, m := range msgs {
		s[i] = fmt.Sprintf("%s %q qos=%d retained=%v", m.Topic(), m.Payload(), m.Qos(), m.Retained())
	}
	return fmt.Sprint(s)
}

func v3Basic(b confBroker) error {
	c, present, err := v3Connect(b, b.id("a"), v3Options{clean: true})
	if err != nil {
		return err
	}
	defer c.close()
	if present {
		return errors.New("clean session: CONNACK says session present")
	}
	t := b.topic("a")
	if err := c.subOK(2, t); err != nil {
		return err
	}
	for qos := byte(0); qos < 3; qos++ {
		if err := c.pub(t, qos, false, fmt.Sprintf("qos %d", qos)); err != nil {
			return err
		}
	}
	got := collect(c.msgs, 3, confWait, 300*time.Millisecond)
	if len(got) != 3 || qosSet(got) != "[0 1 2]" {
		return fmt.Errorf("published QoS 0, 1, 2 to a topic subscribed at QoS 2, received %s", describe3(got))
	}
	if err := rawQoS2Flow(b); err != nil {
		return err
	}
	if err := rawSecondConnect(b); err != nil {
		return err
	}
	return rawBadProtocolName(b)
}

// rawQoS2Flow: a QoS 2 PUBLISH is answered with PUBREC, its PUBREL with
// PUBCOMP (a client library may let a PUBACK pass).
func rawQoS2Flow(b confBroker) error {
	conn, rc, err := rawV3Connect(b, v3Connect3{id: b.id("qos2")})
	if err != nil {
		return err
	}
	defer conn.Close()
	if rc != 0 {
		return fmt.Errorf("raw CONNECT refused with return code %d", rc)
	}
	topic := b.topic("qos2")
	pub := append([]byte{0x34, byte(2 + len(topic) + 2 + 1), 0, byte(len(topic))}, topic...)
	pub = append(pub, 0, 7, 'x') // packet id 7
	for _, step := range []struct {
		send []byte
		want byte
		name string
	}{{pub, 0x50, "PUBLISH QoS 2: want PUBREC"}, {[]byte{0x62, 2, 0, 7}, 0x70, "PUBREL: want PUBCOMP"}} {
		if _, err := conn.Write(step.send); err != nil {
			return err
		}
		_ = conn.SetReadDeadline(time.Now().Add(confWait))
		ack := make([]byte, 4)
		if _, err := io.ReadFull(conn, ack); err != nil {
			return fmt.Errorf("%s: %w", step.name, err)
		}
		if ack[0] != step.want || ack[2] != 0 || ack[3] != 7 {
			return fmt.Errorf("%s for packet id 7, got % x", step.name, ack)
		}
	}
	return nil
}

// rawSecondConnect: a second CONNECT on a connection is a protocol
// violation: the server closes the connection [MQTT-3.1.0-2].
func rawSecondConnect(b confBroker) error {
	conn, rc, err := rawV3Connect(b, v3Connect3{id: b.id("raw")})
	if err != nil {
		return err
	}
	defer conn.Close()
	if rc != 0 {
		return fmt.Errorf("raw CONNECT refused with return code %d", rc)
	}
	if _, err := conn.Write(v3Connect3{id: b.id("raw")}.packet()); err != nil {
		return nil // already closed
	}
	if !closedWithin(conn, confWait) {
		return errors.New("a second CONNECT on the same connection: the connection stays open")
	}
	return nil
}

// rawBadProtocolName: a CONNECT with protocol name "hj" is refused (no
// CONNACK 0).
func rawBadProtocolName(b confBroker) error {
	conn, rc, err := rawV3Connect(b, v3Connect3{id: b.id("hj"), protocol: "hj"})
	if err != nil {
		return nil // closed without CONNACK: refused
	}
	defer conn.Close()
	if rc == 0 {
		return errors.New("a CONNECT with protocol name \"hj\" was accepted")
	}
	return nil
}

// closedWithin reports whether the peer closes conn within d (reads and
// discards what it sends).
func closedWithin(conn net.Conn, d time.Duration) bool {
	_ = conn.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 512)
	for {
		if _, err := conn.Read(buf); err != nil {
			var ne net.Error
			return !(errors.As(err, &ne) && ne.Timeout())
		}
	}
}

// v3Connect3 is a raw MQTT 3.1.1 CONNECT.
type v3Connect3 struct {
	id                  string
	keepAlive           uint16 // 0: 30s
	willTopic, willBody string // a will at QoS 1 when willTopic is set
	protocol            string // "": MQTT
	persistent          bool   // clean session 0
}

func (c v3Connect3) packet() []byte {
	str := func(b []byte, s string) []byte { return append(append(b, byte(len(s)>>8), byte(len(s))), s...) }
	flags := byte(0x02)
	if c.persistent {
		flags = 0
	}
	if c.willTopic != "" {
		flags |= 0x04 | 0x08 // will, will QoS 1
	}
	protocol, keepAlive := c.protocol, c.keepAlive
	if protocol == "" {
		protocol = "MQTT"
	}
	if keepAlive == 0 {
		keepAlive = 30
	}
	body := str(nil, protocol)
	body = append(body, 4, flags, byte(keepAlive>>8), byte(keepAlive))
	body = str(body, c.id)
	if c.willTopic != "" {
		body = str(str(body, c.willTopic), c.willBody)
	}
	pkt := []byte{0x10}
	for n := len(body); ; {
		d := byte(n % 128)
		if n /= 128; n > 0 {
			d |= 0x80
		}
		if pkt = append(pkt, d); n == 0 {
			break
		}
	}
	return append(pkt, body...)
}

// rawV3Connect sends a CONNECT on a new connection and reads the CONNACK's
// return code.
func rawV3Connect(b confBroker, cp v3Connect3) (net.Conn, byte, error) {
	conn, err := net.DialTimeout("tcp", b.addr, confWait)
	if err != nil {
		return nil, 0, err
	}
	id := cp.id
	if _, err := conn.Write(cp.packet()); err != nil {
		conn.Close()
		return nil, 0, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(confWait))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(conn, ack); err != nil {
		conn.Close()
		return nil, 0, fmt.Errorf("CONNECT %q: no CONNACK: %w", id, err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	if ack[0] != 0x20 {
		conn.Close()
		return nil, 0, fmt.Errorf("CONNECT %q: got packet %#x, want CONNACK", id, ack[0])
	}
	return conn, ack[3], nil
}

func v3Retained(b confBroker) error {
	c, _, err := v3Connect(b, b.id("a"), v3Options{clean: true})
	if err != nil {
		return err
	}
	defer c.close()
	topics := []string{b.topic("qos0"), b.topic("qos1"), b.topic("qos2")}
	for qos, t := range topics {
		if err := c.pub(t, byte(qos), true, fmt.Sprintf("qos %d", qos)); err != nil {
			return err
		}
	}
	if err := c.subOK(2, b.topic("+")); err != nil {
		return err
	}
	got := collect(c.msgs, 3, confWait, 300*time.Millisecond)
	if len(got) != 3 || !got[0].Retained() || !got[1].Retained() || !got[2].Retained() {
		return fmt.Errorf("3 retained messages, a new subscription received %s", describe3(got))
	}
	for qos, t := range topics { // clear them
		if err := c.pub(t, byte(qos), true, ""); err != nil {
			return err
		}
	}
	d, _, err := v3Connect(b, b.id("b"), v3Options{clean: true})
	if err != nil {
		return err
	}
	defer d.close()
	if err := d.subOK(2, b.topic("+")); err != nil {
		return err
	}
	if got := collect(d.msgs, 0, 0, time.Second); len(got) != 0 {
		return fmt.Errorf("retained messages cleared by empty retained publishes, a new subscription still received %s", describe3(got))
	}
	return nil
}

func v3Will(b confBroker) error {
	willTopic := b.topic("will")
	sub, _, err := v3Connect(b, b.id("b"), v3Options{clean: true})
	if err != nil {
		return err
	}
	defer sub.close()
	if err := sub.subOK(2, willTopic); err != nil {
		return err
	}
	a, _, err := v3Connect(b, b.id("a"), v3Options{clean: true, keepAlive: 2 * time.Second, willTopic: willTopic, willBody: "client not disconnected"})
	if err != nil {
		return err
	}
	a.kill()
	if got := collect(sub.msgs, 1, 10*time.Second, 300*time.Millisecond); len(got) != 1 || string(got[0].Payload()) != "client not disconnected" {
		return fmt.Errorf("a client with a will lost its connection; the will's subscriber received %s, want the will once", describe3(got))
	}
	return nil
}

func v3ZeroLengthClientID(b confBroker) error {
	// Raw: paho.mqtt.golang takes a CONNACK return code it does not know
	// (such as 0x80) for success.
	conn, rc, err := rawV3Connect(b, v3Connect3{persistent: true})
	if err == nil {
		conn.Close()
		if rc != 2 {
			return fmt.Errorf("an empty client id with clean session 0: CONNACK return code %#x, want 2 (identifier rejected)", rc)
		}
	}
	c, _, err := v3Connect(b, "", v3Options{clean: true})
	if err != nil {
		return fmt.Errorf("an empty client id with clean session: %w", err)
	}
	c.close()
	return nil
}

func v3OfflineQueueing(b confBroker) error {
	a, _, err := v3Connect(b, b.id("a"), v3Options{clean: false})
	if err != nil {
		return err
	}
	if err := a.subOK(2, b.topic("+")); err != nil {
		return err
	}
	a.close()
	p, _, err := v3Connect(b, b.id("b"), v3Options{clean: true})
	if err != nil {
		return err
	}
	for qos := byte(0); qos < 3; qos++ {
		if err := p.pub(b.topic(fmt.Sprintf("qos%d", qos)), qos, false, fmt.Sprintf("qos %d", qos)); err != nil {
			return err
		}
	}
	p.close()
	a, present, err := v3Connect(b, b.id("a"), v3Options{clean: false})
	if err != nil {
		return err
	}
	defer func() { a.close(); cleanSession(b, b.id("a")) }()
	if !present {
		return errors.New("reconnecting with clean session false: CONNACK says no session present")
	}
	got := collect(a.msgs, 3, 3*time.Second, 300*time.Millisecond)
	qos := map[byte]bool{}
	for _, m := range got {
		qos[m.Qos()] = true
	}
	if len(got) < 2 || len(got) > 3 || !qos[1] || !qos[2] {
		return fmt.Errorf("QoS 0, 1, 2 published while the subscriber was offline; on reconnect it received %s, want the QoS 1 and 2 ones", describe3(got))
	}
	return nil
}

// cleanSession ends the persistent session of id.
func cleanSession(b confBroker, id string) {
	if c, _, err := v3Connect(b, id, v3Options{clean: true}); err == nil {
		c.close()
	}
}

func v3Overlapping(b confBroker) error {
	c, _, err := v3Connect(b, b.id("a"), v3Options{clean: true})
	if err != nil {
		return err
	}
	defer c.close()
	granted, err := c.sub(2, b.topic("A/#"))
	if err == nil && granted[0] < 0x80 {
		granted, err = c.sub(1, b.topic("A/+"))
	}
	if err != nil || granted[0] >= 0x80 {
		return fmt.Errorf("subscribe A/# QoS 2 and A/+ QoS 1: granted %v, %v", granted, err)
	}
	if err := c.pub(b.topic("A/C"), 2, false, "overlapping topic filters"); err != nil {
		return err
	}
	got := collect(c.msgs, 2, time.Second, 300*time.Millisecond)
	if qos := qosSet(got); qos != "[2]" && qos != "[1 2]" {
		return fmt.Errorf("a QoS 2 publish matching subscriptions at QoS 2 and 1: received %s, want one at QoS 2 or one at each QoS", describe3(got))
	}
	return nil
}

func v3Keepalive(b confBroker) error {
	willTopic := b.topic("keepalive")
	sub, _, err := v3Connect(b, b.id("b"), v3Options{clean: true})
	if err != nil {
		return err
	}
	defer sub.close()
	if err := sub.subOK(2, willTopic); err != nil {
		return err
	}
	conn, rc, err := rawV3Connect(b, v3Connect3{id: b.id("a"), keepAlive: 2, willTopic: willTopic, willBody: "keepalive expiry"})
	if err != nil {
		return err
	}
	defer conn.Close()
	if rc != 0 {
		return fmt.Errorf("CONNECT with a will: return code %d", rc)
	}
	// The client now sends nothing: after 1.5 × 2s the server must drop it
	// and publish its will.
	if got := collect(sub.msgs, 1, 10*time.Second, 300*time.Millisecond); len(got) != 1 {
		return fmt.Errorf("a silent client with keepalive 2s and a will: received %s, want the will", describe3(got))
	}
	if !closedWithin(conn, confWait) {
		return errors.New("a client silent past its keepalive is still connected")
	}
	return nil
}

func v3Redelivery(b confBroker) error {
	id := b.id("b")
	c, _, err := v3Connect(b, id, v3Options{clean: false, noAutoAck: true})
	if err != nil {
		return err
	}
	defer cleanSession(b, id)
	if err := c.subOK(2, b.topic("#")); err != nil {
		return err
	}
	for qos := byte(1); qos < 3; qos++ {
		if err := c.pub(b.topic(fmt.Sprintf("qos%d", qos)), qos, false, fmt.Sprintf("qos %d", qos)); err != nil {
			return err
		}
	}
	if got := collect(c.msgs, 2, confWait, 0); len(got) != 2 {
		return fmt.Errorf("QoS 1 and 2 to itself: received %s", describe3(got))
	}
	c.close() // without acknowledging them
	c, _, err = v3Connect(b, id, v3Options{clean: false})
	if err != nil {
		return err
	}
	defer c.close()
	if got := collect(c.msgs, 2, confWait, 300*time.Millisecond); len(got) != 2 {
		return fmt.Errorf("QoS 1 and 2 messages not acknowledged before a disconnect: on reconnect received %s, want both again", describe3(got))
	}
	return nil
}

func v3SubscribeFailure(b confBroker) error {
	c, _, err := v3Connect(b, b.id("a"), v3Options{clean: true})
	if err != nil {
		return err
	}
	defer c.close()
	granted, err := c.sub(2, "test/nosubscribe")
	if err != nil {
		return err
	}
	if granted[0] != 0x80 {
		return fmt.Errorf("subscribe to test/nosubscribe, which the policy denies: SUBACK %#x, want 0x80", granted[0])
	}
	return nil
}

func v3DollarTopics(b confBroker) error {
	c, _, err := v3Connect(b, b.id("b"), v3Options{clean: true})
	if err != nil {
		return err
	}
	defer c.close()
	if err := c.subOK(2, "+/"+b.ns+"/x"); err != nil {
		return err
	}
	if err := c.pub("plain/"+b.ns+"/x", 1, false, "control"); err != nil {
		return err
	}
	_ = c.pub("$dollar/"+b.ns+"/x", 1, false, "dollar") // a server may refuse it
	got := collect(c.msgs, 1, confWait, 500*time.Millisecond)
	if len(got) != 1 || got[0].Topic() != "plain/"+b.ns+"/x" {
		return fmt.Errorf("a filter starting with + must not match a $ topic: received %s, want only plain/…", describe3(got))
	}
	return nil
}

func v3Unsubscribe(b confBroker) error {
	c, _, err := v3Connect(b, b.id("b"), v3Options{clean: true})
	if err != nil {
		return err
	}
	defer c.close()
	topics := []string{b.topic("a"), b.topic("b"), b.topic("c")}
	for _, t := range topics {
		if err := c.subOK(2, t); err != nil {
			return err
		}
	}
	if err := waitToken("unsubscribe", c.Unsubscribe(topics[0])); err != nil {
		return err
	}
	p, _, err := v3Connect(b, b.id("a"), v3Options{clean: true})
	if err != nil {
		return err
	}
	defer p.close()
	for _, t := range topics {
		if err := p.pub(t, 1, false, ""); err != nil {
			return err
		}
	}
	if got := collect(c.msgs, 2, confWait, 500*time.Millisecond); len(got) != 2 {
		return fmt.Errorf("subscribed to 3 topics, unsubscribed from one: received %s, want 2", describe3(got))
	}
	return nil
}
