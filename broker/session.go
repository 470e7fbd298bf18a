package broker

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/store/crdt"
)

var errClientID = errors.New("client id must equal the authenticated identity (device or device/module)")

// session is one authenticated connection. There is at most one per
// identity: a new connection replaces the old (mochi's session takeover).
type session struct {
	b              *Broker
	cl             *mqtt.Client
	id             string
	device, module string
	twinSession    crdt.HLC // orders this connection's reported writes after earlier ones
	generation     string   // the identity's generationId when it connected
	edgeGeneration string   // the edge's, when it connected
	login          Login    // what CONNECT proved: rechecked when the identity changes
	ended          atomic.Bool
	since          time.Time // when the session was established (Options.Now)
	// Counters of the client list (clients.go): PUBLISH packets received
	// from it, queued messages it acknowledged, and those sent to it and
	// not yet acknowledged.
	received, delivered, outstanding atomic.Int64

	mu   sync.Mutex
	subs map[string]bool // IoT Hub subscription kinds: twin, desired, methods, inputs, c2d

	held    []packets.Packet // held-back messages mochi wrote and forgot (flow.go)
	aside   []packets.Packet // the server's messages whose id a SUBSCRIBE uses (pktid.go)
	acks    ackQueue
	deliver *deliverer
	// inline fans this client's free-topic QoS 1 publishes out in mochi
	// under its client id (freetopic.go); made and used only by the
	// client's read loop.
	inline  *mqtt.Client
	expiry  *time.Timer // ends the session when its token expires
	stopped bool        // by stop: no timer is armed again
}

func (b *Broker) openSession(cl *mqtt.Client) {
	login := b.takePending(cl)
	device, module, _ := strings.Cut(cl.ID, "/")
	if login.Account != "" {
		device, module = "", "" // a generic client: no IoT Hub identity
	}
	s := &session{b: b, cl: cl, id: cl.ID, device: device, module: module, subs: map[string]bool{}, login: login, since: b.opts.Now()}
	s.acks.init(s)
	if b.opts.Generation != nil {
		s.generation = b.opts.Generation(cl.ID)
		s.edgeGeneration = b.opts.Generation(b.opts.EdgeID) // the source of its free-topic messages
	}
	hlc, err := b.opts.Twins.BeginSession()
	if err != nil {
		b.log.Error("twin session", "client_id", cl.ID, "err", err)
	}
	s.twinSession = hlc
	b.mu.Lock()
	if cl.Closed() {
		// mochi runs this hook after CONNACK, so a newer connection of the
		// same identity may already have taken this one over (and
		// registered itself): a closed client must not replace it.
		b.mu.Unlock()
		s.acks.stop()
		return
	}
	old := b.sessions[cl.ID]
	b.sessions[cl.ID] = s
	b.mu.Unlock()
	if old != nil {
		old.stop() // its deliveries end before ours begin
	}
	// The identity may have changed between CONNECT and now, unseen by
	// IdentitiesChanged (the session was not registered yet).
	b.recheck(s)
	s.watchExpiry()
	// Subscriptions restored from a persistent session do not start
	// deliveries: the Azure SDKs subscribe again after every connect and
	// ignore (yet acknowledge) what arrives before, so a C2D message or an
	// input sent then would be lost. Deliveries wait for this connection's
	// own SUBSCRIBE; nothing is lost meanwhile, it stays queued.
	b.log.Info("client connected", "client_id", cl.ID, "remote", cl.Net.Remote, "protocol", cl.Properties.ProtocolVersion)
	if b.opts.OnClients != nil {
		b.opts.OnClients()
	}
}

func (b *Broker) closeSession(cl *mqtt.Client) {
	b.mu.Lock()
	s := b.sessions[cl.ID]
	if s == nil || s.cl != cl {
		b.mu.Unlock()
		return
	}
	delete(b.sessions, cl.ID)
	b.mu.Unlock()
	s.stop()
	b.log.Info("client disconnected", "client_id", cl.ID)
	if b.opts.OnClients != nil {
		b.opts.OnClients()
	}
}

// session returns the live session of cl, nil if it has none (refused, or
// already replaced).
func (b *Broker) session(cl *mqtt.Client) *session {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s := b.sessions[cl.ID]; s != nil && s.cl == cl {
		return s
	}
	return nil
}

// sessionOf returns the live session of an identity.
func (b *Broker) sessionOf(id string) *session {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sessions[id]
}

func (s *session) stop() {
	s.mu.Lock()
	d := s.deliver
	s.deliver = nil
	s.stopped = true
	if s.expiry != nil {
		s.expiry.Stop()
	}
	s.mu.Unlock()
	if d != nil {
		d.stop()
	}
	s.acks.stop()
}

// subscribed records an IoT Hub subscription and starts deliveries when a
// module subscribes to its inputs or a device to its C2D messages.
func (s *session) subscribed(filter string, on bool) {
	kind := subscriptionKind(filter)
	if kind == "" {
		return
	}
	s.mu.Lock()
	s.subs[kind] = on
	start := on && (kind == "inputs" || kind == "c2d") && s.deliver == nil
	if start {
		s.deliver = newDeliverer(s, kind)
	}
	s.mu.Unlock()
}

func subscriptionKind(filter string) string {
	switch {
	case filter == "$iothub/twin/res/#":
		return "twin"
	case strings.HasPrefix(filter, "$iothub/twin/PATCH/properties/desired/"):
		return "desired"
	case strings.HasPrefix(filter, "$iothub/methods/POST/"):
		return "methods"
	case strings.HasSuffix(filter, "/messages/devicebound/#"):
		return "c2d"
	case strings.Contains(filter, "/modules/") && (strings.HasSuffix(filter, "/#") || strings.HasSuffix(filter, "/inputs/#")):
		return "inputs"
	}
	return ""
}

func (s *session) has(kind string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.subs[kind]
}

// publish writes a PUBLISH to this client only, at QoS 0.
func (s *session) publish(topic string, payload []byte) error {
	return write(s.cl, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish},
		TopicName:   topic,
		Payload:     payload,
	})
}

// ackNow acknowledges a QoS 1 publish handled synchronously, in order with
// the telemetry acknowledgements still pending.
func (s *session) ackNow(pk packets.Packet) {
	if pk.FixedHeader.Qos == 0 {
		return
	}
	if e, ok := s.pushAck(pk); ok {
		s.acks.done(e, nil)
	}
}

// pushAck queues the PUBACK of pk; false when the client already has
// MaxInflight publishes unacknowledged: the publish is refused and the
// client disconnected (MQTT 5 Receive Maximum).
func (s *session) pushAck(pk packets.Packet) (*ackEntry, bool) {
	if e, ok := s.acks.push(pk.PacketID, pk.FixedHeader.Qos); ok {
		return e, true
	}
	s.b.refused(ReasonInflight, s.id, pk.TopicName,
		fmt.Errorf("more than %d publishes unacknowledged (Receive Maximum); the client is disconnected", s.b.opts.MaxInflight))
	_ = s.b.srv.DisconnectClient(s.cl, packets.ErrReceiveMaximum)
	return nil, false
}

// refuse rejects a publish: MQTT 5 clients get a PUBACK with the reason,
// MQTT 3.1.1 clients are disconnected (they have no negative PUBACK).
// Nothing refused is ever acknowledged as accepted.
func (s *session) refuse(pk packets.Packet, code packets.Code, reason Reason, err error) {
	s.b.refused(reason, s.id, pk.TopicName, err)
	if pk.FixedHeader.Qos == 0 && s.cl.Properties.ProtocolVersion == 5 {
		return
	}
	s.nack(pk, refusal{code: code, err: err})
}

// answer refuses a publish outside what the client may use (already
// counted) as mochi's own ACL check does: a QoS 0 publish is dropped, a
// QoS 1 or 2 one answered with code (PUBACK or PUBREC), or the MQTT 3.1.1
// client disconnected.
func (s *session) answer(pk packets.Packet, code packets.Code) {
	if pk.FixedHeader.Qos == 0 {
		return
	}
	s.nack(pk, refusal{code: code, err: errors.New(code.Reason)})
}

// nack queues the negative acknowledgement of pk, in order with the
// acknowledgements pending before it.
func (s *session) nack(pk packets.Packet, r refusal) {
	e, ok := s.acks.push(pk.PacketID, pk.FixedHeader.Qos)
	if !ok { // already counted under its reason: only disconnect
		_ = s.b.srv.DisconnectClient(s.cl, packets.ErrReceiveMaximum)
		return
	}
	s.acks.done(e, r)
}

type refusal struct {
	code       packets.Code
	err        error
	disconnect bool // the client is disconnected with code (MQTT 5 too), not answered
}

func (r refusal) Error() string { return r.err.Error() }
