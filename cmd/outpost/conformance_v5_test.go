package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// v5Checks: the MQTT 5 behaviours of the Paho suite's client_test5.py that
// 3.1.1 does not have (the shared ones run once, in v3Checks), with
// paho.golang (and raw packets where a library client cannot misbehave).
var v5Checks = []conformanceCheck{
	{"v5_basic", v5Basic},
	{"session_expiry", v5SessionExpiry},
	{"session_expiry_zero_on_disconnect", v5SessionExpiryZeroOnDisconnect},
	{"user_properties", v5UserProperties},
	{"payload_format", v5PayloadFormat},
	{"publication_expiry", v5PublicationExpiry},
	{"no_local", v5NoLocal},
	{"retain_as_published", v5RetainAsPublished},
	{"retain_handling", v5RetainHandling},
	{"assigned_clientid", v5AssignedClientID},
	{"subscription_identifiers", v5SubscriptionIdentifiers},
	{"request_response", v5RequestResponse},
	{"client_topic_alias", v5ClientTopicAlias},
	{"server_topic_alias", v5ServerTopicAlias},
	{"maximum_packet_size", v5MaximumPacketSize},
	{"server_keep_alive", v5ServerKeepAlive},
	{"flow_control_client", v5FlowControlClient},
	{"flow_control_server", v5FlowControlServer},
	{"will_delay", v5WillDelay},
	{"will_properties", v5WillProperties},
	{"shared_subscriptions", v5SharedSubscriptions},
}

// v5Client is a paho.golang client whose received messages go to msgs and
// whose server DISCONNECTs go to disc.
type v5Client struct {
	*paho.Client
	conn net.Conn
	msgs chan *paho.Publish
	disc chan *paho.Disconnect
	once sync.Once
	// maxQoS is the server's Maximum QoS (CONNACK). The checks of MQTT 5
	// features publish at each QoS up to it: QoS 2 has its own checks
	// (v5_basic, and basic, offline_message_queueing and
	// redelivery_on_reconnect in 3.1.1).
	maxQoS byte
	errMu  sync.Mutex
	err    error // the first error the client reported
}

// clientErr is the first error the client reported (nil when none).
func (c *v5Client) clientErr() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

// v5Connect connects cp.ClientID to b (cp.KeepAlive 30 when 0).
func v5Connect(b confBroker, cp *paho.Connect, manualAck bool) (*v5Client, *paho.Connack, error) {
	conn, err := net.DialTimeout("tcp", b.addr, confWait)
	if err != nil {
		return nil, nil, err
	}
	c := &v5Client{conn: conn, msgs: make(chan *paho.Publish, 100), disc: make(chan *paho.Disconnect, 1)}
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn: conn, EnableManualAcknowledgment: manualAck, SendAcksInterval: 10 * time.Millisecond,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(r paho.PublishReceived) (bool, error) {
			c.msgs <- r.Packet
			return true, nil
		}},
		OnClientError: func(err error) {
			c.errMu.Lock()
			defer c.errMu.Unlock()
			if c.err == nil {
				c.err = err
			}
		},
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case c.disc <- d:
			default:
			}
		},
	})
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	ctx, cancel := context.WithTimeout(context.Background(), confWait)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		conn.Close()
		return nil, ca, fmt.Errorf("connect %q: %w", cp.ClientID, err)
	}
	c.maxQoS = 2
	if ca.Properties != nil && ca.Properties.MaximumQoS != nil {
		c.maxQoS = *ca.Properties.MaximumQoS
	}
	return c, ca, nil
}

// v5Simple connects id with a clean start.
func v5Simple(b confBroker, id string) (*v5Client, error) {
	c, _, err := v5Connect(b, &paho.Connect{ClientID: b.id(id), CleanStart: true}, false)
	return c, err
}

func (c *v5Client) close() {
	c.once.Do(func() { _ = c.Disconnect(&paho.Disconnect{}); _ = c.conn.Close() })
}

func (c *v5Client) closeWith(expiry uint32) {
	c.once.Do(func() {
		_ = c.Disconnect(&paho.Disconnect{Properties: &paho.DisconnectProperties{SessionExpiryInterval: &expiry}})
		_ = c.conn.Close()
	})
}

func (c *v5Client) sub(opts ...paho.SubscribeOptions) error {
	return c.subProps(nil, opts...)
}

func (c *v5Client) subProps(props *paho.SubscribeProperties, opts ...paho.SubscribeOptions) error {
	ctx, cancel := context.WithTimeout(context.Background(), confWait)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: opts, Properties: props})
	if err != nil {
		return fmt.Errorf("subscribe %+v: %w", opts, err)
	}
	for i, r := range sa.Reasons {
		if r >= 0x80 {
			return fmt.Errorf("subscribe %s refused: SUBACK reason %#x", opts[i].Topic, r)
		}
	}
	return nil
}

func (c *v5Client) pub(p *paho.Publish) error {
	ctx, cancel := context.WithTimeout(context.Background(), confWait)
	defer cancel()
	r, err := c.Publish(ctx, p)
	if err != nil {
		return fmt.Errorf("publish QoS %d to %q: %w", p.QoS, p.Topic, err)
	}
	if r != nil && r.ReasonCode >= 0x80 {
		return fmt.Errorf("publish QoS %d to %q refused: reason %#x", p.QoS, p.Topic, r.ReasonCode)
	}
	return nil
}

// collect5 receives messages until it has n or within passes; then for
// settle more, to see extra ones.
func collect5(ch chan *paho.Publish, n int, within, settle time.Duration) []*paho.Publish {
	var got []*paho.Publish
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

func describe5(msgs []*paho.Publish) string {
	s := make([]string, len(msgs))
	for i, m := range msgs {
		s[i] = fmt.Sprintf("%q %q qos=%d retain=%v%s", m.Topic, m.Payload, m.QoS, m.Retain, propsString(m.Properties))
	}
	return fmt.Sprint(s)
}

// propsString lists the properties that are set.
func propsString(p *paho.PublishProperties) string {
	if p == nil {
		return ""
	}
	var b strings.Builder
	for _, f := range []struct {
		name string
		set  bool
		v    any
	}{
		{"payloadFormat", p.PayloadFormat != nil, p.PayloadFormat}, {"messageExpiry", p.MessageExpiry != nil, p.MessageExpiry},
		{"contentType", p.ContentType != "", p.ContentType}, {"responseTopic", p.ResponseTopic != "", p.ResponseTopic},
		{"correlationData", len(p.CorrelationData) > 0, string(p.CorrelationData)},
		{"subscriptionId", p.SubscriptionIdentifier != nil, p.SubscriptionIdentifier},
		{"topicAlias", p.TopicAlias != nil, p.TopicAlias}, {"user", len(p.User) > 0, p.User},
	} {
		if !f.set {
			continue
		}
		v := reflect.ValueOf(f.v)
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		fmt.Fprintf(&b, " %s=%v", f.name, v.Interface())
	}
	return b.String()
}

func u32(v uint32) *uint32 { return &v }
func u16(v uint16) *uint16 { return &v }

// pubEachQoS publishes body to topic at each QoS up to the server's
// maximum with props.
func (c *v5Client) pubEachQoS(topic, body string, props *paho.PublishProperties) error {
	for qos := byte(0); qos <= c.maxQoS; qos++ {
		if err := c.pub(&paho.Publish{Topic: topic, QoS: qos, Payload: []byte(body), Properties: props}); err != nil {
			return err
		}
	}
	return nil
}

// roundTrip subscribes c to a topic, publishes at each QoS with props and
// returns what c received.
func roundTrip(b confBroker, props *paho.PublishProperties) ([]*paho.Publish, error) {
	c, err := v5Simple(b, "a")
	if err != nil {
		return nil, err
	}
	defer c.close()
	t := b.topic("a")
	if err := c.sub(paho.SubscribeOptions{Topic: t, QoS: 2}); err != nil {
		return nil, err
	}
	if err := c.pubEachQoS(t, "round trip", props); err != nil {
		return nil, err
	}
	n := int(c.maxQoS) + 1
	got := collect5(c.msgs, n, confWait, 300*time.Millisecond)
	if len(got) != n {
		return got, fmt.Errorf("published at QoS 0 to %d to a subscribed topic, received %s", c.maxQoS, describe5(got))
	}
	return got, nil
}

// v5Basic: publish and subscribe at QoS 0, 1 and 2.
func v5Basic(b confBroker) error {
	c, err := v5Simple(b, "probe")
	if err != nil {
		return err
	}
	c.close()
	if c.maxQoS < 2 {
		return fmt.Errorf("the CONNACK's Maximum QoS is %d: no QoS 2", c.maxQoS)
	}
	_, err = roundTrip(b, nil)
	return err
}

// sessionStep is one connection of a session expiry plan: connect (clean
// start, session expiry), expect session present, maybe subscribe,
// disconnect (with a session expiry when disconnectExpiry is set), sleep.
type sessionStep struct {
	clean, present, subscribe bool
	expiry                    uint32
	disconnectExpiry          *uint32
	sleep                     time.Duration
}

func runSessionPlan(b confBroker, plan []sessionStep) error {
	id := b.id("a")
	for i, s := range plan {
		expiry := s.expiry
		c, ca, err := v5Connect(b, &paho.Connect{ClientID: id, CleanStart: s.clean,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}, false)
		if err != nil {
			return fmt.Errorf("step %d: %w", i+1, err)
		}
		if ca.SessionPresent != s.present {
			c.close()
			return fmt.Errorf("step %d: connect (clean start %v, session expiry %ds): session present %v, want %v", i+1, s.clean, s.expiry, ca.SessionPresent, s.present)
		}
		if s.subscribe {
			err = c.sub(paho.SubscribeOptions{Topic: b.topic("a"), QoS: 2})
		}
		if s.disconnectExpiry != nil {
			c.closeWith(*s.disconnectExpiry)
		} else {
			c.close()
		}
		if err != nil {
			return fmt.Errorf("step %d: %w", i+1, err)
		}
		time.Sleep(s.sleep) // the session expiry interval under test
	}
	return nil
}

func v5SessionExpiry(b confBroker) error {
	return runSessionPlan(b, []sessionStep{
		{true, false, true, 0, nil, 0},                  // expiry 0: ends with the connection
		{false, false, false, 0, nil, 0},                // …so none here
		{true, false, true, 3, nil, time.Second},        // 3s: still there after 1s
		{false, true, false, 3, nil, 5 * time.Second},   // …and gone 5s later (brokers check on a 1s tick)
		{false, false, false, 3, nil, 0},                //
		{true, false, true, 1, u32(4), 2 * time.Second}, // DISCONNECT raises it to 4s
		{false, true, false, 1, nil, 0},                 // …so it is there after 2s
	})
}

// v5SessionExpiryZeroOnDisconnect: a DISCONNECT with session expiry 0
// ends the session with the connection.
func v5SessionExpiryZeroOnDisconnect(b confBroker) error {
	return runSessionPlan(b, []sessionStep{
		{true, false, true, 60, u32(0), 0},
		{false, false, false, 0, nil, 0},
	})
}

func v5UserProperties(b confBroker) error {
	user := paho.UserProperties{{Key: "a", Value: "2"}, {Key: "c", Value: "3"}}
	got, err := roundTrip(b, &paho.PublishProperties{User: user})
	if err != nil {
		return err
	}
	for _, m := range got {
		if m.Properties == nil || m.Properties.User.Get("a") != "2" || m.Properties.User.Get("c") != "3" {
			return fmt.Errorf("published with user properties a=2, c=3; received %s", describe5(got))
		}
	}
	return nil
}

func v5PayloadFormat(b confBroker) error {
	utf8 := byte(1)
	got, err := roundTrip(b, &paho.PublishProperties{PayloadFormat: &utf8, ContentType: "My name"})
	if err != nil {
		return err
	}
	for _, m := range got {
		if m.Properties == nil || m.Properties.PayloadFormat == nil || *m.Properties.PayloadFormat != 1 || m.Properties.ContentType != "My name" {
			return fmt.Errorf("published with payload format 1 and content type \"My name\"; received %s", describe5(got))
		}
	}
	return nil
}

func v5PublicationExpiry(b confBroker) error {
	id := b.id("b")
	sub, _, err := v5Connect(b, &paho.Connect{ClientID: id, CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(300)}}, false)
	if err != nil {
		return err
	}
	if err := sub.sub(paho.SubscribeOptions{Topic: b.topic("a"), QoS: 2}); err != nil {
		return err
	}
	sub.close()
	p, err := v5Simple(b, "a")
	if err != nil {
		return err
	}
	defer p.close()
	for _, expiry := range []uint32{1, 6} {
		for qos := byte(1); qos <= p.maxQoS; qos++ {
			body := fmt.Sprintf("qos %d expiry %d", qos, expiry)
			if err := p.pub(&paho.Publish{Topic: b.topic("a"), QoS: qos, Payload: []byte(body),
				Properties: &paho.PublishProperties{MessageExpiry: u32(expiry)}}); err != nil {
				return err
			}
		}
	}
	time.Sleep(3 * time.Second) // the 1s ones expire, the 6s ones do not
	sub, _, err = v5Connect(b, &paho.Connect{ClientID: id, Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(0)}}, false)
	if err != nil {
		return err
	}
	defer sub.close()
	n := int(p.maxQoS) // one per QoS from 1
	got := collect5(sub.msgs, n, confWait, 500*time.Millisecond)
	if len(got) != n {
		return fmt.Errorf("%d messages expiring after 1s, %d after 6s, subscriber back after 3s: received %s, want the ones with 6s", n, n, describe5(got))
	}
	for _, m := range got {
		if m.Properties == nil || m.Properties.MessageExpiry == nil || *m.Properties.MessageExpiry >= 6 {
			return fmt.Errorf("messages kept 3s of their 6s expiry must arrive with less than 6s left: %s", describe5(got))
		}
	}
	return nil
}

func v5NoLocal(b confBroker) error {
	a, err := v5Simple(b, "a")
	if err != nil {
		return err
	}
	defer a.close()
	c, err := v5Simple(b, "b")
	if err != nil {
		return err
	}
	defer c.close()
	t := b.topic("a")
	for _, cl := range []*v5Client{a, c} {
		if err := cl.sub(paho.SubscribeOptions{Topic: t, QoS: 2, NoLocal: true}); err != nil {
			return err
		}
	}
	if err := a.pub(&paho.Publish{Topic: t, QoS: 1, Payload: []byte("noLocal test")}); err != nil {
		return err
	}
	gotB := collect5(c.msgs, 1, confWait, 500*time.Millisecond)
	gotA := collect5(a.msgs, 0, 0, 0)
	if len(gotA) != 0 || len(gotB) != 1 {
		return fmt.Errorf("no local: the publisher received %s (want none), the other subscriber %s (want one)", describe5(gotA), describe5(gotB))
	}
	return nil
}

func v5RetainAsPublished(b confBroker) error {
	c, err := v5Simple(b, "a")
	if err != nil {
		return err
	}
	defer c.close()
	t := b.topic("a")
	if err := c.sub(paho.SubscribeOptions{Topic: t, QoS: 2, RetainAsPublished: true}); err != nil {
		return err
	}
	defer func() { _ = c.pub(&paho.Publish{Topic: t, QoS: 1, Retain: true}) }()
	for _, retain := range []bool{false, true} {
		if err := c.pub(&paho.Publish{Topic: t, QoS: 1, Retain: retain, Payload: []byte(fmt.Sprint("retain ", retain))}); err != nil {
			return err
		}
	}
	got := collect5(c.msgs, 2, confWait, 300*time.Millisecond)
	if len(got) != 2 || got[0].Retain || !got[1].Retain {
		return fmt.Errorf("retain as published: a plain then a retained publish arrived as %s, want retain false then true", describe5(got))
	}
	return nil
}

func v5RetainHandling(b confBroker) error {
	c, err := v5Simple(b, "a")
	if err != nil {
		return err
	}
	topics := []string{b.topic("qos0"), b.topic("qos1"), b.topic("qos2")}
	for qos, t := range topics {
		if err := c.pub(&paho.Publish{Topic: t, QoS: min(byte(qos), c.maxQoS), Retain: true, Payload: []byte("retained")}); err != nil {
			c.close()
			return err
		}
	}
	defer func() {
		for _, t := range topics {
			_ = c.pub(&paho.Publish{Topic: t, QoS: 1, Retain: true})
		}
		c.close()
	}()
	filter := b.topic("+")
	for i, s := range []struct {
		handling byte
		want     int
		fresh    bool
	}{{1, 3, false}, {1, 0, false}, {2, 0, true}, {2, 0, false}, {0, 3, true}, {0, 3, false}} {
		if s.fresh { // a new subscription, on a new connection
			c.close()
			if c, err = v5Simple(b, "a"); err != nil {
				return err
			}
		}
		if err := c.sub(paho.SubscribeOptions{Topic: filter, QoS: 2, RetainHandling: s.handling}); err != nil {
			return err
		}
		wait := confWait
		if s.want == 0 {
			wait = 0
		}
		if got := collect5(c.msgs, s.want, wait, 500*time.Millisecond); len(got) != s.want {
			return fmt.Errorf("step %d, retain handling %d on a %s subscription: received %s, want %d retained messages",
				i+1, s.handling, map[bool]string{true: "new", false: "repeated"}[s.fresh || i == 0], describe5(got), s.want)
		}
	}
	return nil
}

func v5AssignedClientID(b confBroker) error {
	c, ca, err := v5Connect(b, &paho.Connect{CleanStart: true}, false)
	if err != nil {
		return err
	}
	defer c.close()
	if ca.Properties == nil || ca.Properties.AssignedClientID == "" {
		return fmt.Errorf("an empty client id: the CONNACK assigns none (%+v)", ca.Properties)
	}
	return nil
}

func v5SubscriptionIdentifiers(b confBroker) error {
	a, err := v5Simple(b, "a")
	if err != nil {
		return err
	}
	defer a.close()
	c, err := v5Simple(b, "b")
	if err != nil {
		return err
	}
	defer c.close()
	t := b.topic("a")
	id := func(n int) *paho.SubscribeProperties { return &paho.SubscribeProperties{SubscriptionIdentifier: &n} }
	if err := a.subProps(id(456789), paho.SubscribeOptions{Topic: t, QoS: 2}); err != nil {
		return err
	}
	if err := c.subProps(id(2), paho.SubscribeOptions{Topic: t, QoS: 2}); err != nil {
		return err
	}
	if err := c.subProps(id(3), paho.SubscribeOptions{Topic: t + "/#", QoS: 2}); err != nil {
		return err
	}
	if err := c.pub(&paho.Publish{Topic: t, QoS: 1, Payload: []byte("sub identifier test")}); err != nil {
		return err
	}
	gotA := collect5(a.msgs, 1, confWait, 300*time.Millisecond)
	if len(gotA) != 1 || gotA[0].Properties == nil || gotA[0].Properties.SubscriptionIdentifier == nil || *gotA[0].Properties.SubscriptionIdentifier != 456789 {
		return fmt.Errorf("subscribed with identifier 456789, received %s", describe5(gotA))
	}
	// paho.golang keeps one identifier per message: each message the
	// overlapping subscriptions deliver must carry one of theirs.
	gotB := collect5(c.msgs, 1, confWait, 300*time.Millisecond)
	if len(gotB) == 0 {
		return errors.New("overlapping subscriptions with identifiers 2 and 3: nothing received")
	}
	for _, m := range gotB {
		if m.Properties == nil || m.Properties.SubscriptionIdentifier == nil || (*m.Properties.SubscriptionIdentifier != 2 && *m.Properties.SubscriptionIdentifier != 3) {
			return fmt.Errorf("overlapping subscriptions with identifiers 2 and 3: received %s", describe5(gotB))
		}
	}
	return nil
}

func v5RequestResponse(b confBroker) error {
	req, err := v5Simple(b, "a")
	if err != nil {
		return err
	}
	defer req.close()
	resp, err := v5Simple(b, "b")
	if err != nil {
		return err
	}
	defer resp.close()
	reqTopic, respTopic := b.topic("request"), b.topic("response")
	if err := req.sub(paho.SubscribeOptions{Topic: respTopic, QoS: 2}); err != nil {
		return err
	}
	if err := resp.sub(paho.SubscribeOptions{Topic: reqTopic, QoS: 2}); err != nil {
		return err
	}
	if err := req.pub(&paho.Publish{Topic: reqTopic, QoS: 1, Payload: []byte("request"),
		Properties: &paho.PublishProperties{ResponseTopic: respTopic, CorrelationData: []byte("334")}}); err != nil {
		return err
	}
	got := collect5(resp.msgs, 1, confWait, 0)
	if len(got) != 1 || got[0].Properties == nil || got[0].Properties.ResponseTopic != respTopic || string(got[0].Properties.CorrelationData) != "334" {
		return fmt.Errorf("a request with response topic and correlation data 334 arrived as %s", describe5(got))
	}
	if err := resp.pub(&paho.Publish{Topic: got[0].Properties.ResponseTopic, QoS: 1, Payload: []byte("response"),
		Properties: &paho.PublishProperties{CorrelationData: got[0].Properties.CorrelationData}}); err != nil {
		return err
	}
	got = collect5(req.msgs, 1, confWait, 0)
	if len(got) != 1 || got[0].Properties == nil || string(got[0].Properties.CorrelationData) != "334" {
		return fmt.Errorf("the response arrived as %s, want correlation data 334", describe5(got))
	}
	return nil
}

// waitDisconnected reports whether the server ends c's connection within
// d, with the reason of its DISCONNECT (-1 without one).
func (c *v5Client) waitDisconnected(d time.Duration) (bool, int) {
	select {
	case dp := <-c.disc:
		return true, int(dp.ReasonCode)
	case <-c.Done():
		return true, -1
	case <-time.After(d):
		return false, 0
	}
}

func v5ClientTopicAlias(b confBroker) error {
	c, err := v5Simple(b, "a")
	if err != nil {
		return err
	}
	// Alias 0 is a protocol error: the server disconnects (0x94). paho
	// refuses to send it, so the packet goes on the connection directly.
	bad := packets.NewControlPacket(packets.PUBLISH)
	bad.Content.(*packets.Publish).Topic = b.topic("a")
	bad.Content.(*packets.Publish).Properties = &packets.Properties{TopicAlias: u16(0)}
	_, _ = bad.WriteTo(c.conn)
	if gone, _ := c.waitDisconnected(confWait); !gone {
		c.close()
		return errors.New("a PUBLISH with topic alias 0: still connected, want DISCONNECT 0x94")
	}
	c.close()
	c, ca, err := v5Connect(b, &paho.Connect{ClientID: b.id("a"), CleanStart: true}, false)
	if err != nil {
		return err
	}
	defer c.close()
	if ca.Properties == nil || ca.Properties.TopicAliasMaximum == nil || *ca.Properties.TopicAliasMaximum == 0 {
		return nil // the server takes no aliases: nothing more to check
	}
	t := b.topic("a")
	if err := c.sub(paho.SubscribeOptions{Topic: t, QoS: 2}); err != nil {
		return err
	}
	for _, topic := range []string{t, ""} { // set alias 1, then use it
		if err := c.pub(&paho.Publish{Topic: topic, QoS: 1, Payload: []byte("alias"), Properties: &paho.PublishProperties{TopicAlias: u16(1)}}); err != nil {
			return err
		}
	}
	if got := collect5(c.msgs, 2, confWait, 300*time.Millisecond); len(got) != 2 || got[0].Topic != t || got[1].Topic != t {
		return fmt.Errorf("published with topic and alias 1, then with alias 1 alone: received %s, want both on %s", describe5(got), t)
	}
	return aliasesEndWithConnection(b)
}

// aliasesEndWithConnection: topic aliases belong to one network connection
// [MQTT-3.3.2-7]; alias 1 alone on a new connection is a protocol error
// (DISCONNECT 0x82 or 0x94).
func aliasesEndWithConnection(b confBroker) error {
	c, err := v5Simple(b, "a")
	if err != nil {
		return err
	}
	defer c.close()
	p := packets.NewControlPacket(packets.PUBLISH)
	p.Content.(*packets.Publish).Payload = []byte("stale alias")
	p.Content.(*packets.Publish).Properties = &packets.Properties{TopicAlias: u16(1)}
	_, _ = p.WriteTo(c.conn)
	if gone, _ := c.waitDisconnected(confWait); !gone {
		return errors.New("on a new connection, a PUBLISH with only the topic alias 1 of the last connection: still connected, want DISCONNECT")
	}
	return nil
}

func v5ServerTopicAlias(b confBroker) error {
	for _, max := range []*uint16{u16(1), nil, u16(0)} {
		c, _, err := v5Connect(b, &paho.Connect{ClientID: b.id("a"), CleanStart: true, Properties: &paho.ConnectProperties{TopicAliasMaximum: max}}, false)
		if err != nil {
			return err
		}
		t := b.topic("a")
		err = c.sub(paho.SubscribeOptions{Topic: t, QoS: 2})
		if err == nil {
			err = c.pubEachQoS(t, "topic alias", nil)
		}
		n := int(c.maxQoS) + 1
		got := collect5(c.msgs, n, confWait, 300*time.Millisecond)
		c.close()
		if err != nil {
			return err
		}
		if len(got) != n {
			return fmt.Errorf("%d publishes, received %s", n, describe5(got))
		}
		aliased := got[0].Properties != nil && got[0].Properties.TopicAlias != nil
		for _, m := range got {
			has := m.Properties != nil && m.Properties.TopicAlias != nil
			if max == nil || *max == 0 {
				if has {
					return fmt.Errorf("client topic alias maximum 0: the server sent an alias: %s", describe5(got))
				}
			} else if !aliased || !has || *m.Properties.TopicAlias != *got[0].Properties.TopicAlias {
				return fmt.Errorf("client topic alias maximum 1, 3 messages on one topic: received %s, want every one with the same alias", describe5(got))
			}
		}
		for i, m := range got {
			if aliased && (i == 0) != (m.Topic == t) {
				return fmt.Errorf("server topic aliases: the first message sets it, the next use it alone: received %s", describe5(got))
			}
		}
	}
	return nil
}

func v5MaximumPacketSize(b confBroker) error {
	const max = 64
	c, _, err := v5Connect(b, &paho.Connect{ClientID: b.id("a"), CleanStart: true, Properties: &paho.ConnectProperties{MaximumPacketSize: u32(max)}}, false)
	if err != nil {
		return err
	}
	defer c.close()
	t := b.topic("a")
	if err := c.sub(paho.SubscribeOptions{Topic: t, QoS: 2}); err != nil {
		return err
	}
	small, big := make([]byte, 10), make([]byte, max)
	if err := c.pub(&paho.Publish{Topic: t, QoS: 0, Payload: small}); err != nil {
		return err
	}
	if err := c.pub(&paho.Publish{Topic: t, QoS: 1, Payload: big}); err != nil {
		return err
	}
	if got := collect5(c.msgs, 1, confWait, time.Second); len(got) != 1 || len(got[0].Payload) != len(small) {
		return fmt.Errorf("maximum packet size %d: a message that fits and one that does not; received %s, want only the first (client error: %v)", max, describe5(got), c.clientErr())
	}
	return nil
}

func v5ServerKeepAlive(b confBroker) error {
	c, ca, err := v5Connect(b, &paho.Connect{ClientID: b.id("a"), CleanStart: true, KeepAlive: 120}, false)
	if err != nil {
		return err
	}
	defer c.close()
	if ca.Properties == nil || ca.Properties.ServerKeepAlive == nil {
		return errors.New("keep alive 120s: the CONNACK sets no server keep alive (the Paho suite expects its broker to lower it)")
	}
	return nil
}

func v5FlowControlClient(b confBroker) error {
	c, _, err := v5Connect(b, &paho.Connect{ClientID: b.id("a"), CleanStart: true, Properties: &paho.ConnectProperties{ReceiveMaximum: u16(2)}}, true)
	if err != nil {
		return err
	}
	defer c.close()
	t := b.topic("a")
	if err := c.sub(paho.SubscribeOptions{Topic: t, QoS: 2}); err != nil {
		return err
	}
	p, err := v5Simple(b, "b")
	if err != nil {
		return err
	}
	defer p.close()
	for i := 1; i <= 3; i++ {
		if err := p.pub(&paho.Publish{Topic: t, QoS: 1, Payload: []byte(fmt.Sprint("message ", i))}); err != nil {
			return err
		}
	}
	got := collect5(c.msgs, 2, confWait, time.Second)
	if len(got) != 2 {
		return fmt.Errorf("receive maximum 2, 3 QoS 1 messages, none acknowledged: received %s, want 2", describe5(got))
	}
	if err := c.Ack(got[0]); err != nil {
		return err
	}
	more := collect5(c.msgs, 1, confWait, 300*time.Millisecond)
	if len(more) != 1 {
		return fmt.Errorf("receive maximum 2, one of two acknowledged: received %s, want the third", describe5(more))
	}
	_ = c.Ack(got[1])
	_ = c.Ack(more[0])
	return nil
}

// v5FlowControlServer: a client that sends more QoS 2 publishes than the
// server's receive maximum without completing them is disconnected with
// 0x93 (receive maximum exceeded).
func v5FlowControlServer(b confBroker) error {
	conn, err := net.DialTimeout("tcp", b.addr, confWait)
	if err != nil {
		return err
	}
	defer conn.Close()
	cp := packets.NewControlPacket(packets.CONNECT)
	cc := cp.Content.(*packets.Connect)
	cc.ProtocolName, cc.ProtocolVersion, cc.ClientID, cc.CleanStart, cc.KeepAlive = "MQTT", 5, b.id("a"), true, 30
	if _, err := cp.WriteTo(conn); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(confWait))
	ack, err := packets.ReadPacket(conn)
	if err != nil || ack.Type != packets.CONNACK || ack.Content.(*packets.Connack).ReasonCode != 0 {
		return fmt.Errorf("raw MQTT 5 CONNECT: %v %v", ack, err)
	}
	max := 65535
	if p := ack.Content.(*packets.Connack).Properties; p != nil && p.ReceiveMaximum != nil {
		max = int(*p.ReceiveMaximum)
	}
	go func() { // PUBRECs come back and are never answered with PUBREL
		for i := 1; i <= max+1; i++ {
			pp := packets.NewControlPacket(packets.PUBLISH)
			pub := pp.Content.(*packets.Publish)
			pub.Topic, pub.QoS, pub.PacketID, pub.Payload = b.topic("a"), 2, uint16(i), []byte("flow")
			if _, err := pp.WriteTo(conn); err != nil {
				return
			}
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		p, err := packets.ReadPacket(conn)
		if err != nil {
			return fmt.Errorf("%d QoS 2 publishes past a receive maximum of %d: no DISCONNECT 0x93 (%v)", max+1, max, err)
		}
		if p.Type == packets.DISCONNECT {
			if rc := p.Content.(*packets.Disconnect).ReasonCode; rc != 0x93 {
				return fmt.Errorf("receive maximum exceeded: DISCONNECT reason %#x, want 0x93", rc)
			}
			return nil
		}
	}
}

func v5WillDelay(b confBroker) error {
	for _, s := range []struct{ delay, expiry uint32 }{{3, 5}, {5, 0}, {5, 2}} {
		want := time.Duration(min(s.delay, s.expiry)) * time.Second
		if err := willAfter(b, s.delay, s.expiry, want); err != nil {
			return err
		}
	}
	return nil
}

// willAfter checks that the will of a client with will delay and session
// expiry arrives want to want+2s after its connection is lost.
func willAfter(b confBroker, delay, expiry uint32, want time.Duration) error {
	willTopic := b.topic("will")
	sub, err := v5Simple(b, "b")
	if err != nil {
		return err
	}
	defer sub.close()
	if err := sub.sub(paho.SubscribeOptions{Topic: willTopic, QoS: 2}); err != nil {
		return err
	}
	a, _, err := v5Connect(b, &paho.Connect{ClientID: b.id("a"), CleanStart: true,
		Properties:     &paho.ConnectProperties{SessionExpiryInterval: u32(expiry)},
		WillMessage:    &paho.WillMessage{Topic: willTopic, QoS: 1, Payload: []byte("will")},
		WillProperties: &paho.WillProperties{WillDelayInterval: u32(delay)}}, false)
	if err != nil {
		return err
	}
	start := time.Now()
	_ = a.conn.Close() // lost, no DISCONNECT
	got := collect5(sub.msgs, 1, want+4*time.Second, 0)
	took := time.Since(start)
	// Brokers check delays on a 1s tick: as the Paho suite, allow up to 2s late.
	if len(got) != 1 || took < want-500*time.Millisecond || took > want+2*time.Second {
		return fmt.Errorf("will delay %ds, session expiry %ds: the will arrived after %v (%d messages), want %v to %v",
			delay, expiry, took.Round(100*time.Millisecond), len(got), want, want+2*time.Second)
	}
	return nil
}

func v5SharedSubscriptions(b confBroker) error {
	shared, plain := "$share/sharename/"+b.topic("x"), b.topic("t")
	var clients []*v5Client
	for _, id := range []string{"a", "b"} {
		c, err := v5Simple(b, id)
		if err != nil {
			return err
		}
		defer c.close()
		if err := c.sub(paho.SubscribeOptions{Topic: shared, QoS: 2}, paho.SubscribeOptions{Topic: plain, QoS: 2}); err != nil {
			return err
		}
		clients = append(clients, c)
	}
	if err := clients[1].pub(&paho.Publish{Topic: plain, QoS: 1, Payload: []byte("to both")}); err != nil {
		return err
	}
	for _, c := range clients {
		if got := collect5(c.msgs, 1, confWait, 300*time.Millisecond); len(got) != 1 {
			return fmt.Errorf("a plain subscription next to a shared one: received %s, want 1", describe5(got))
		}
	}
	const n = 6
	for i := 0; i < n; i++ {
		if err := clients[1].pub(&paho.Publish{Topic: b.topic("x"), QoS: 1, Payload: []byte(fmt.Sprint("shared ", i))}); err != nil {
			return err
		}
	}
	bodies := bodiesOf(clients, n)
	if len(bodies) != n {
		return fmt.Errorf("%d messages to a shared subscription of 2 clients: received %v, want each once", n, bodies)
	}
	for i := 1; i < n; i++ {
		if bodies[i] == bodies[i-1] {
			return fmt.Errorf("shared subscription: %q delivered twice", bodies[i])
		}
	}
	return nil
}

// bodiesOf collects the payloads that clients receive until there are n
// (or confWait passes), and any more that follow within 300ms; sorted.
func bodiesOf(clients []*v5Client, n int) []string {
	var bodies []string
	deadline := time.Now().Add(confWait)
	for len(bodies) < n && time.Now().Before(deadline) {
		for _, c := range clients {
			for _, m := range collect5(c.msgs, 0, 0, 50*time.Millisecond) {
				bodies = append(bodies, string(m.Payload))
			}
		}
	}
	for _, c := range clients {
		for _, m := range collect5(c.msgs, 0, 0, 300*time.Millisecond) {
			bodies = append(bodies, string(m.Payload))
		}
	}
	sort.Strings(bodies)
	return bodies
}

// v5WillProperties: a will published on a lost connection carries the
// will's user properties.
func v5WillProperties(b confBroker) error {
	willTopic := b.topic("will")
	sub, err := v5Simple(b, "b")
	if err != nil {
		return err
	}
	defer sub.close()
	if err := sub.sub(paho.SubscribeOptions{Topic: willTopic, QoS: 2}); err != nil {
		return err
	}
	a, _, err := v5Connect(b, &paho.Connect{ClientID: b.id("a"), CleanStart: true,
		WillMessage:    &paho.WillMessage{Topic: willTopic, QoS: 1, Payload: []byte("will")},
		WillProperties: &paho.WillProperties{User: paho.UserProperties{{Key: "a", Value: "2"}, {Key: "c", Value: "3"}}}}, false)
	if err != nil {
		return err
	}
	_ = a.conn.Close() // lost, no DISCONNECT
	got := collect5(sub.msgs, 1, confWait, 0)
	if len(got) != 1 || got[0].Properties == nil || got[0].Properties.User.Get("a") != "2" || got[0].Properties.User.Get("c") != "3" {
		return fmt.Errorf("a will with user properties a=2, c=3 arrived as %s", describe5(got))
	}
	return nil
}
