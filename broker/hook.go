package broker

import (
	"bytes"
	"fmt"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// hook connects mochi's events to the broker.
type hook struct {
	mqtt.HookBase
	b *Broker
}

func (h *hook) ID() string { return "outpost" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnSessionEstablished, mqtt.OnDisconnect,
		mqtt.OnPublish, mqtt.OnPacketRead, mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnUnsubscribed, mqtt.OnPacketEncode,
		mqtt.OnPacketSent, mqtt.OnWill,
	}, []byte{b})
}

// OnConnect decides the CONNECT (login.go) and, when it is refused,
// answers with the reason's CONNACK itself: mochi's own refusal after
// OnConnectAuthenticate can only say "bad user name or password".
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	h.b.quiet.bump() // the session may inherit subscriptions (quiet.go)
	login, err := h.b.login(cl, pk)
	if err != nil {
		r := h.b.authRefused(cl, string(pk.Connect.Username), err)
		_ = h.b.connack(cl, err)
		return authCodes[r]
	}
	h.b.pend(cl, login)
	return nil
}

func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	login, ok := h.b.pendingLogin(cl)
	if !ok {
		return false
	}
	h.b.setAccount(cl.ID, login.Account) // "" for an IoT identity: the id is no longer a generic client's
	if g, ok := cl.Net.Conn.(*guardConn); ok {
		g.s.authenticated() // lifts the pre-auth deadline and byte cap
	}
	return true
}

func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.b.quiet.bump()
	h.b.openSession(cl)
}

func (h *hook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	h.b.restoreHeld(cl) // a persistent session sends them again
	h.b.closeSession(cl)
}

func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	if write {
		// mochi asks before it resolves a topic alias (and, refusing, would
		// not record an alias the PUBLISH sets): OnPublish decides on the
		// resolved topic (authorize), with the same counts and answers.
		return true
	}
	if h.b.mayAccess(cl.ID, topic, write) {
		return true
	}
	h.b.denied(cl.ID, topic, write)
	return false
}

// mayAccess is the authorization of a client id to publish to a topic
// (write) or to subscribe to / receive on a topic or filter: an IoT Hub
// identity's own IoT Hub topics, else the free-topic policy for the
// client's principal (a generic client's account; it has no IoT Hub
// topics). A shared subscription `$share/<group>/<filter>` is authorized
// as its filter, so a share group never widens a grant, and never on IoT
// Hub topics (IoT Hub has none).
func (b *Broker) mayAccess(id, topic string, write bool) bool {
	shared := false
	if !write {
		if f, ok := sharedFilter(topic); ok {
			if f == "" {
				return false
			}
			topic, shared = f, true
		}
	}
	name, generic := b.principal(id)
	if iotHubTopic(topic) {
		if !write && (generic || shared) && wildcardFirst(topic) {
			// A filter such as # or +/+ may be granted by the policy: mochi's
			// fan-out carries free topics only (IoT Hub traffic is handled
			// here and written to its one recipient), and mochi checks every
			// delivery again by its topic name, which refuses IoT Hub topics.
			return b.policy.Load().Allowed(name, topic, write)
		}
		return !shared && !generic && allowed(id, topic, write)
	}
	return b.policy.Load().Allowed(name, topic, write)
}

// wildcardFirst tells a filter whose first level is a wildcard.
func wildcardFirst(f string) bool {
	return f == "#" || f == "+" || strings.HasPrefix(f, "+/")
}

// sharedFilter returns the filter of a shared subscription
// ("$share/<group>/<filter>", the prefix in any case as mochi takes it)
// and true; a filter that is not shared comes back unchanged with false.
func sharedFilter(f string) (string, bool) {
	if !mqtt.IsSharedFilter(f) {
		return f, false
	}
	parts := strings.SplitN(f, "/", 3)
	if len(parts) < 3 {
		return "", true
	}
	return parts[2], true
}

// denied counts and logs a publish or subscription outside what the
// client may use.
func (b *Broker) denied(id, topic string, write bool) {
	b.stats.Denied.Add(1)
	// Per packet: mochi drops a denied QoS 0 publish and keeps the
	// client, which may repeat it at line rate.
	if ok, n := b.refusedLog.Allow("denied"); ok {
		b.log.Warn("refused topic outside the client's identity", "client_id", id, "topic", topic, "publish", write,
			"refused_since_last_logged", n)
	}
}

// OnSubscribe applies the cap on filters per client: a filter past it is
// replaced by capFilter, which mochi refuses and OnSubscribed answers with
// 0x97 (quota exceeded; MQTT 3.1.1: 0x80). A filter the client already
// holds is renewed. A QoS 2 subscription to an IoT Hub topic is granted
// QoS 1, as IoT Hub does.
func (h *hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	h.b.quiet.bump() // before mochi's index changes, and again after (quiet.go)
	if cl.Net.Inline {
		return pk
	}
	held := cl.State.Subscriptions.Len()
	out := append(packets.Subscriptions(nil), pk.Filters...)
	for i, f := range pk.Filters {
		if f.Qos > 1 && iotHubTopic(f.Filter) && !wildcardFirst(f.Filter) {
			out[i].Qos = 1
		}
		if _, ok := cl.State.Subscriptions.Get(f.Filter); ok {
			continue
		}
		if held < h.b.opts.MaxSubscriptions {
			held++
			continue
		}
		out[i].Filter = capFilter
		h.b.stats.SubRefused.Add(1)
		if ok, n := h.b.refusedLog.Allow("subscriptions"); ok {
			h.b.log.Warn("subscription refused", "reason", "too_many_subscriptions", "client_id", cl.ID, "filter", f.Filter,
				"limit", h.b.opts.MaxSubscriptions, "refused_since_last_logged", n)
		}
	}
	pk.Filters = out
	return pk
}

// capFilter stands for a filter refused by the subscription cap: an
// invalid filter ('#' not last), which mochi refuses without subscribing.
const capFilter = "#/\x00outpost:too-many-subscriptions"

func (h *hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	h.b.quiet.bump()
	for i, f := range pk.Filters {
		// codes is the SUBACK's reason codes, not yet written.
		if f.Filter == capFilter && i < len(codes) && cl.Properties.ProtocolVersion == 5 {
			codes[i] = packets.ErrQuotaExceeded.Code
		}
	}
	if s := h.b.session(cl); s != nil {
		s.stepBack()
		for i, f := range pk.Filters {
			if i < len(codes) && codes[i] < 0x80 {
				s.subscribed(f.Filter, true)
			}
		}
	}
}

func (h *hook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if s := h.b.session(cl); s != nil {
		s.stepBack()
		for _, f := range pk.Filters {
			s.subscribed(f.Filter, false)
		}
	}
}

// taken ends mochi's handling of a publish the broker took: stored,
// answered or refused by it. It does what packets.ErrRejectPacket does
// without its cost: on that path mochi boxes the whole packet into the
// arguments of a debug log call, about 900 B allocated per message (a
// quarter of all the bytes an ingested message allocated, by the
// allocation profile of 10 publishers). Marked Ignore at QoS 0 without
// retain, the packet goes past mochi's retain, PUBACK and fan-out.
func taken(pk packets.Packet) (packets.Packet, error) {
	pk.Ignore = true
	pk.FixedHeader.Qos, pk.FixedHeader.Retain = 0, false
	return pk, nil
}

// OnPublish takes every IoT Hub topic out of mochi's fan-out: telemetry is
// acknowledged by us once it is durable, twin and method traffic is
// answered to the sender alone. Only free topics the policy allows reach
// mochi's subscribers, after the routes took them (freetopic.go).
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	s := h.b.session(cl)
	if s == nil {
		return taken(pk)
	}
	s.received.Add(1)
	if !h.authorize(s, pk) {
		return taken(pk)
	}
	in, err := parseTopic(pk.TopicName)
	if err != nil {
		s.refuse(pk, packets.ErrTopicNameInvalid, ReasonMalformed, err)
		return taken(pk)
	}
	switch in.kind {
	case topicTelemetry:
		h.b.ingest(s, pk, in)
	case topicTwinGet, topicTwinReported:
		h.b.twinRequest(s, pk, in)
	case topicMethodResponse:
		h.b.methods.answer(s.id, in.rid, in.status, pk.Payload)
		s.ackNow(pk)
	default:
		if !iotHubTopic(pk.TopicName) {
			return h.b.freeTopic(s, pk) // a free topic the policy allowed
		}
		// In the IoT Hub namespace but not a topic the edge serves
		// (devices/{d}/messages/eventsX): IoT Hub refuses it, and nothing
		// would store it, so it must not be acknowledged.
		s.refuse(pk, packets.ErrTopicNameInvalid, ReasonTopic,
			fmt.Errorf("topic %q is not served by the edge; telemetry goes to devices/{device}[/modules/{module}]/messages/events/{properties}", pk.TopicName))
	}
	return taken(pk)
}

// authorize is the authoritative check of a publish, on its topic as
// resolved from an MQTT 5 topic alias (mochi's ACL check runs before the
// alias is resolved): false when it is refused, answered and counted.
// IoT Hub topics refuse QoS 2 as IoT Hub does: the client is disconnected
// (MQTT 5: DISCONNECT 0x9B, QoS not supported) once the publishes before
// it are answered.
func (h *hook) authorize(s *session, pk packets.Packet) bool {
	if pk.TopicName == "" {
		// An alias this connection never set (aliases live for one
		// connection, [MQTT-3.3.2-7]): a protocol error that ends it.
		err := fmt.Errorf("PUBLISH with topic alias %d, which this connection has not set", pk.Properties.TopicAlias)
		h.b.refused(ReasonMalformed, s.id, "", err)
		s.nack(pk, refusal{code: packets.Code{Code: packets.ErrTopicAliasInvalid.Code, Reason: err.Error()}, err: err, disconnect: true})
		return false
	}
	if !h.b.mayAccess(s.id, pk.TopicName, true) {
		h.b.denied(s.id, pk.TopicName, true)
		s.answer(pk, packets.ErrNotAuthorized)
		return false
	}
	if pk.FixedHeader.Qos == 2 && iotHubTopic(pk.TopicName) {
		err := fmt.Errorf("QoS 2 publish to IoT Hub topic %q; IoT Hub topics take QoS 0 or 1 (free topics take QoS 2)", pk.TopicName)
		h.b.refused(ReasonQoS, s.id, pk.TopicName, err)
		// After the PUBACKs of what came before, which may still be on
		// their way to the store.
		s.nack(pk, refusal{code: packets.Code{Code: packets.ErrQosNotSupported.Code, Reason: err.Error()}, err: err, disconnect: true})
		return false
	}
	return true
}

// OnPacketEncode completes what mochi sends:
//   - a successful CONNACK tells the Topic Alias Maximum and the Maximum
//     Packet Size, which mochi applies but never advertises (absent, a
//     client may use no alias, and believes any size goes: mochi closes
//     the connection of a client that sends a larger packet);
//   - a PUBLISH keeps its user properties for a client that asked for no
//     problem information (Request Problem Information 0, paho.golang's
//     default): that covers reason strings and user properties on other
//     packets, never a message's own [MQTT-3.1.2-29]; mochi drops them.
func (h *hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	switch pk.FixedHeader.Type {
	case packets.Connack:
		if pk.ReasonCode == packets.ErrUnspecifiedError.Code && cl.Properties.ProtocolVersion < 5 {
			// mochi's answer to a 3.1.1 CONNECT with an empty client id and
			// clean session 0, which 3.1.1 answers with return code 2
			// (identifier rejected) [MQTT-3.1.3-8]; 0x80 is no 3.1.1 code.
			pk.ReasonCode = packets.Err3ClientIdentifierNotValid.Code
		}
		if pk.ReasonCode == 0 {
			pk.Properties.TopicAliasMaximum = topicAliasMaximum
			pk.Properties.MaximumPacketSize = h.b.srv.Options.Capabilities.MaximumPacketSize
		}
	case packets.Publish:
		pk.Mods.DisallowProblemInfo = false
	}
	return pk
}

// OnWill holds a will to what its client may publish, which mochi does
// not check: a will outside it is counted and logged as denied, and
// replaced by an empty message on refusedWill, which no client can
// receive.
func (h *hook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if h.b.mayAccess(cl.ID, will.TopicName, true) && (will.Qos < 2 || !iotHubTopic(will.TopicName)) {
		return will, nil
	}
	h.b.denied(cl.ID, will.TopicName, true)
	return mqtt.Will{TopicName: refusedWill, Flag: will.Flag}, nil
}

// refusedWill is where a refused will goes: a $SYS topic, which only the
// broker's inline client may subscribe to (OnACLCheck refuses "$" topics
// to every client).
const refusedWill = "$SYS/outpost/refused-will"

func (h *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	h.b.restoreHeld(cl) // before the acknowledgement of one is processed
	switch pk.FixedHeader.Type {
	case packets.Puback:
		if s := h.b.session(cl); s != nil {
			s.stepBack()
			s.pubacked(pk.PacketID)
		}
	case packets.Subscribe, packets.Unsubscribe:
		if s := h.b.session(cl); s != nil {
			s.stepBack()
			s.stepAside(pk)
		}
	}
	return pk, nil
}

// iotHubTopic tells the IoT Hub topic space, which the free-topic policy
// never opens to other identities.
func iotHubTopic(topic string) bool {
	return strings.HasPrefix(topic, "devices/") || strings.HasPrefix(topic, "$iothub/") || topic == "#" || strings.HasPrefix(topic, "+/") || strings.HasPrefix(topic, "$")
}

// allowed is the ACL: a client publishes and subscribes only within its own
// identity's IoT Hub topics.
func allowed(id, topic string, write bool) bool {
	device, module, isModule := strings.Cut(id, "/")
	if !safeLevel(device) || isModule && !safeLevel(module) {
		// An id that bypassed validation: "devices/+/" would be every
		// device's topics.
		return false
	}
	own := "devices/" + device + "/"
	if isModule {
		own += "modules/" + module + "/"
	}
	if write {
		switch {
		case strings.HasPrefix(topic, own+"messages/events"):
			return true
		case strings.HasPrefix(topic, "$iothub/twin/GET/"),
			strings.HasPrefix(topic, "$iothub/twin/PATCH/properties/reported/"),
			strings.HasPrefix(topic, "$iothub/methods/res/"):
			return true
		}
		return false
	}
	switch topic {
	case "$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#", "$iothub/methods/POST/#":
		return true
	case own + "messages/devicebound/#":
		return !isModule
	case own + "#", own + "inputs/#":
		return isModule
	}
	return false
}
