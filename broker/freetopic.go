package broker

import (
	"fmt"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/broker/route"
	"github.com/outpost-edge/outpost/store/queue"
)

// freeTopic handles a PUBLISH on a free topic the policy allowed. A route
// FROM /topics/<filter> may take it into durable queues (upstream with the
// edge as its device); local subscribers get it through mochi either way.
//
//   - QoS 0: stored best effort, mochi fans it out.
//   - QoS 1: taken out of mochi and fanned out by the session's inline
//     client (which carries the publisher's client id, so MQTT 5 No Local
//     holds); the PUBACK waits, in order with the client's other PUBACKs,
//     until the route appends are durable and so is everything the fan-out
//     wrote (the persistent subscribers' inflight records, a retained
//     message), which a barrier on the database behind them proves (taken
//     only when the fan-out wrote: Broker.stateWrites). A PUBACK on a free topic
//     therefore means durable for the upstream and for offline subscribers.
//   - QoS 2: routed ones block this client's read loop here until the
//     appends are durable; only then does mochi send PUBREC and fan out.
func (b *Broker) freeTopic(s *session, pk packets.Packet) (packets.Packet, error) {
	b.stats.TopicReceived.Add(1)
	var msg queue.Message
	var targets []route.Target
	if cfg := b.routes.Load(); cfg.TakesTopics() {
		var rm *route.Message
		msg, rm = b.topicMessage(s, pk)
		targets = cfg.Match(rm)
	}
	if len(targets) == 0 {
		b.stats.TopicNoRoute.Add(1)
	} else if len(pk.Payload) > b.opts.MaxPayload {
		s.refuse(pk, packets.ErrQuotaExceeded, ReasonTooLarge, fmt.Errorf("payload is %d bytes; the limit for routed messages is %d", len(pk.Payload), b.opts.MaxPayload))
		return taken(pk)
	}
	switch pk.FixedHeader.Qos {
	case 0:
		if len(targets) > 0 {
			topic := pk.TopicName // not pk: a closure holding it would copy the packet to the heap
			b.store(msg, targets, &b.stats.TopicStored, func(err error) { b.storeFailed(s.id, topic, err) })
		}
		return pk, nil
	case 1:
		b.freeTopicQoS1(s, pk, msg, targets)
		return taken(pk)
	}
	return b.freeTopicQoS2(s, pk, msg, targets)
}

// freeTopicQoS1 fans pk out and acknowledges it once it is durable.
func (b *Broker) freeTopicQoS1(s *session, pk packets.Packet, msg queue.Message, targets []route.Target) {
	e, ok := s.pushAck(pk)
	if !ok {
		return
	}
	topic := pk.TopicName // not pk: a closure holding it would copy the packet to the heap
	writes := b.stateWrites.Load()
	b.fanOut(s, pk)
	// The fan-out wrote session state (an offline persistent subscriber's
	// message, a retained one) if the count moved; writes of other clients'
	// fan-outs meanwhile only make this publish wait for nothing.
	wrote := b.stateWrites.Load() != writes
	switch {
	case !wrote && len(targets) == 0:
		s.acks.done(e, nil)
	case !wrote:
		b.store(msg, targets, &b.stats.TopicStored, func(err error) { s.acks.done(e, b.storeFailed(s.id, topic, err)) })
	default:
		// Two things must finish: the route appends and the barrier.
		finish := join(2, func(err error) { s.acks.done(e, err) })
		if len(targets) == 0 {
			finish(nil)
		} else {
			b.store(msg, targets, &b.stats.TopicStored, func(err error) { finish(b.storeFailed(s.id, topic, err)) })
		}
		b.opts.Queues.Barrier(func(err error) {
			if err != nil {
				b.refused(ReasonStore, s.id, topic, err)
				err = refusal{code: packets.ErrImplementationSpecificError, err: err}
			}
			finish(err)
		})
	}
}

// freeTopicQoS2 stores a routed QoS 2 publish before mochi answers it.
func (b *Broker) freeTopicQoS2(s *session, pk packets.Packet, msg queue.Message, targets []route.Target) (packets.Packet, error) {
	if len(targets) == 0 {
		return pk, nil
	}
	ch := make(chan error, 1)
	b.store(msg, targets, &b.stats.TopicStored, func(err error) { ch <- err })
	err := <-ch
	if err == nil {
		return pk, nil
	}
	reason, code := storeRefusal(err)
	b.refused(reason, s.id, pk.TopicName, err)
	// A PUBREC with the reason, in order with the PUBACKs pending (mochi
	// would answer a PUBACK: its bug #510); MQTT 3.1.1, which has no
	// negative PUBREC, is disconnected.
	s.nack(pk, refusal{code: code, err: err})
	return taken(pk)
}

// storeFailed counts and logs a failed append and turns it into the
// refusal its PUBACK carries; nil stays nil.
func (b *Broker) storeFailed(id, topic string, err error) error {
	if err == nil {
		return nil
	}
	reason, code := storeRefusal(err)
	b.refused(reason, id, topic, err)
	return refusal{code: code, err: err}
}

// fanOut hands pk to mochi's subscribers (and retained store) as if the
// publisher had sent it at QoS 0: through the session's inline client,
// which has the publisher's client id (mochi sets the packet's origin from
// it, for No Local) and skips the ACL the publish already passed.
func (b *Broker) fanOut(s *session, pk packets.Packet) {
	if !pk.FixedHeader.Retain && b.quiet.quiet(pk.TopicName, b.listened) {
		return // nobody to deliver to, nothing to retain
	}
	if s.inline == nil { // only this client's read loop gets here
		s.inline = b.srv.NewClient(nil, mqtt.LocalListener, s.id, true)
		// InjectPacket stamps the packet with the inline client's version,
		// and mochi expires a message (its own expiry interval) only if
		// that is MQTT 5: the publisher's.
		s.inline.Properties.ProtocolVersion = s.cl.Properties.ProtocolVersion
	}
	out := pk
	out.FixedHeader.Dup = false
	// The alias was resolved into TopicName; the inline client has no
	// alias table of its own to resolve it again.
	out.Properties.TopicAlias, out.Properties.TopicAliasFlag = 0, false
	if err := b.srv.InjectPacket(s.inline, out); err != nil {
		b.log.Error("deliver a free-topic message to local subscribers", "client_id", s.id, "topic", pk.TopicName, "err", err)
	}
}

// topicMessage builds the stored message and the routing view of a
// free-topic publish. Its source is the edge itself: at the hub it is an
// event of the edge device, with the topic and the publisher in the system
// properties mqtt-topic and mqtt-account.
func (b *Broker) topicMessage(s *session, pk packets.Packet) (queue.Message, *route.Message) {
	var app map[string]string // none: stored the same as empty
	if len(pk.Properties.User) > 0 {
		app = make(map[string]string, len(pk.Properties.User))
		for _, p := range pk.Properties.User { // MQTT 5 user properties are application properties
			app[p.Key] = p.Val
		}
	}
	account := s.login.Account
	if account == "" {
		account, _ = b.principal(s.id) // an IoT identity: its id
	}
	sys := map[string]string{route.SysTopic: pk.TopicName, route.SysAccount: account, "connectionDeviceId": b.opts.EdgeID}
	if pk.Properties.ContentType != "" {
		sys["contentType"] = pk.Properties.ContentType
	}
	if s.edgeGeneration != "" {
		sys[sysGeneration] = s.edgeGeneration
	}
	msg := queue.Message{ID: queue.NewID(), Source: b.edgeSource, Props: app, Sys: sys, Body: pk.Payload, TTL: senderTTL(pk, nil)}
	rm := &route.Message{Source: route.Source{Kind: route.Topic, Device: b.opts.EdgeID, Topic: pk.TopicName}, App: app, Sys: sys, Body: pk.Payload}
	return msg, rm
}

// listened reports whether mochi holds a subscription matching topic.
func (b *Broker) listened(topic string) bool {
	subs := b.srv.Topics.Subscribers(topic)
	return len(subs.Subscriptions) > 0 || len(subs.Shared) > 0 || len(subs.InlineSubscriptions) > 0
}
