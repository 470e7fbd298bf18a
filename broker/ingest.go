package broker

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/broker/route"
	"github.com/outpost-edge/outpost/store/queue"
)

// ingest stores a telemetry message in the queue of every endpoint its
// routes name and acknowledges it once all those appends are durable.
// Appends from all clients are grouped by store/queue and store/kv into
// shared commits, so a PUBACK costs a fraction of a commit.
func (b *Broker) ingest(s *session, pk packets.Packet, in inbound) {
	if in.device != s.device || in.module != s.module {
		s.refuse(pk, packets.ErrNotAuthorized, ReasonIdentity, fmt.Errorf("topic %q belongs to another identity", pk.TopicName))
		return
	}
	if len(pk.Payload) > b.opts.MaxPayload {
		s.refuse(pk, packets.ErrQuotaExceeded, ReasonTooLarge, fmt.Errorf("payload is %d bytes; the limit is %d", len(pk.Payload), b.opts.MaxPayload))
		return
	}
	msg, rm, err := b.message(s, pk, in)
	if err != nil {
		s.refuse(pk, packets.ErrPayloadFormatInvalid, ReasonMalformed, err)
		return
	}
	var e *ackEntry
	if pk.FixedHeader.Qos > 0 {
		var ok bool
		if e, ok = s.pushAck(pk); !ok {
			return
		}
	}
	b.stats.Received.Add(1)
	targets := b.routes.Load().Match(rm)
	if len(targets) == 0 {
		b.stats.NoRoute.Add(1)
		if e != nil {
			s.acks.done(e, nil)
		}
		return
	}
	topic := pk.TopicName // not pk: a closure holding it would copy the packet to the heap
	b.store(msg, targets, &b.stats.Stored, func(err error) {
		err = b.storeFailed(s.id, topic, err)
		if e != nil {
			s.acks.done(e, err)
		}
	})
}

// store appends msg to the queue of each target, counting each append made
// in Stats.Stored and in stored; done runs once, after every append
// finished, with the first error.
func (b *Broker) store(msg queue.Message, targets []route.Target, stored *atomic.Int64, done func(error)) {
	finish := done
	if len(targets) > 1 {
		finish = join(len(targets), done)
	}
	for _, t := range targets {
		q, err := b.queueFor(t)
		if err != nil {
			finish(err)
			continue
		}
		m := msg
		m.TTL = t.TTL
		if msg.TTL > 0 && (t.TTL == 0 || msg.TTL < t.TTL) { // the sender's own expiry is shorter
			m.TTL = msg.TTL
		}
		endpoint := t.Sink.Endpoint()
		q.AppendAsync([]queue.Message{m}, func(_ []uint64, err error) {
			if err == nil {
				b.stats.Stored.Add(1)
				if stored != &b.stats.Stored {
					stored.Add(1)
				}
				b.appended(endpoint)
			}
			finish(err)
		})
	}
}

// message builds the stored message and the routing view of a publish.
func (b *Broker) message(s *session, pk packets.Packet, in inbound) (queue.Message, *route.Message, error) {
	app, sys, err := parseBag(in.bag)
	if err != nil {
		return queue.Message{}, nil, err
	}
	for _, p := range pk.Properties.User { // MQTT 5 user properties are application properties too
		app[p.Key] = p.Val
	}
	if pk.Properties.ContentType != "" {
		sys["contentType"] = pk.Properties.ContentType
	}
	// MQTT 5 request/response: the correlation data is IoT Hub's
	// correlationId ($.cid in the bag wins); IoT Hub has no response topic.
	if cd := pk.Properties.CorrelationData; sys["correlationId"] == "" && len(cd) > 0 && utf8.Valid(cd) {
		sys["correlationId"] = string(cd)
	}
	sys["connectionDeviceId"] = s.device
	if s.module != "" {
		sys["connectionModuleId"] = s.module
	}
	if s.generation != "" {
		sys[sysGeneration] = s.generation
	}
	id := sys["messageId"]
	if id == "" {
		id = queue.NewID()
	}
	src := "devices/" + s.device
	if s.module != "" {
		src += "/modules/" + s.module
	}
	msg := queue.Message{ID: id, Source: src, Props: app, Sys: sys, Body: pk.Payload, TTL: senderTTL(pk, sys)}
	rm := &route.Message{
		Source: route.Source{Kind: route.Telemetry, Device: s.device, Module: s.module, Output: sys["outputName"]},
		App:    app, Sys: sys, Body: pk.Payload,
	}
	return msg, rm, nil
}

// senderTTL is how long the sender wants its message kept: MQTT 5's
// message expiry interval, or IoT Hub's $.exp (an absolute ISO 8601 time);
// 0 when it set neither. A time already past keeps the message for a
// nanosecond, so the queue counts it as expired rather than it vanishing.
func senderTTL(pk packets.Packet, sys map[string]string) time.Duration {
	var ttl time.Duration
	if pk.Properties.MessageExpiryInterval > 0 {
		ttl = time.Duration(pk.Properties.MessageExpiryInterval) * time.Second
	}
	if v := sys["absoluteExpiryTime"]; v == "" {
		return ttl
	} else if exp, err := time.Parse(time.RFC3339Nano, v); err == nil {
		left := max(time.Until(exp), time.Nanosecond)
		if ttl == 0 || left < ttl {
			ttl = left
		}
	}
	return ttl
}

// appended wakes the delivery of a module or device whose queue grew.
func (b *Broker) appended(endpoint string) {
	var id string
	switch {
	case strings.HasPrefix(endpoint, "modules/"):
		module, _, _ := strings.Cut(strings.TrimPrefix(endpoint, "modules/"), "/")
		id = b.opts.EdgeID + "/" + module
	case strings.HasPrefix(endpoint, "c2d/"):
		id = strings.TrimPrefix(endpoint, "c2d/")
	default:
		return
	}
	if s := b.sessionOf(id); s != nil {
		s.mu.Lock()
		d := s.deliver
		s.mu.Unlock()
		if d != nil {
			d.poke()
		}
	}
}

// join returns a function to call n times (n > 0), from any goroutine;
// the n-th call runs done with the first error any call was given.
func join(n int, done func(error)) func(error) {
	var left atomic.Int32
	left.Store(int32(n))
	var first atomic.Pointer[error]
	return func(err error) {
		if err != nil {
			first.CompareAndSwap(nil, &err)
		}
		if left.Add(-1) == 0 {
			var out error
			if p := first.Load(); p != nil {
				out = *p
			}
			done(out)
		}
	}
}
