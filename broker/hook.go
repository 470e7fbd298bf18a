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
		mqtt.OnPublish, mqtt.OnPacketRead, mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnUnsubscribed,
	}, []byte{b})
}

// OnConnect decides the CONNECT (login.go) and, when it is refused,
// answers with the reason's CONNACK itself: mochi's own refusal after
// OnConnectAuthenticate can only say "bad user name or password".
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	login, err := h.b.login(cl, pk)
	if err != nil {
		r := h.b.authRefused(cl, string(pk.Connect.Username), err)
		_ = h.b.connack(cl, r)
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
	h.b.openSession(cl)
}

func (h *hook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	h.b.closeSession(cl)
}

func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	name, generic := h.b.principal(cl.ID)
	ok := !generic && allowed(cl.ID, topic, write) // a generic client has no IoT Hub topics
	if !ok && !iotHubTopic(topic) {
		ok = h.b.policy.Load().Allowed(name, topic, write)
	}
	if !ok {
		h.b.stats.Denied.Add(1)
		// Per packet: mochi drops a denied QoS 0 publish and keeps the
		// client, which may repeat it at line rate.
		if ok, n := h.b.refusedLog.Allow("denied"); ok {
			h.b.log.Warn("refused topic outside the client's identity", "client_id", cl.ID, "topic", topic, "publish", write,
				"refused_since_last_logged", n)
		}
		return false
	}
	return true
}

// OnSubscribe applies the cap on filters per client: a filter past it
// is blanked, which mochi refuses with a failure code in the SUBACK
// (0x80; MQTT 5: 0x8F). A filter the client already holds is renewed.
func (h *hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if cl.Net.Inline {
		return pk
	}
	held := cl.State.Subscriptions.Len()
	var out packets.Subscriptions
	for i, f := range pk.Filters {
		if _, ok := cl.State.Subscriptions.Get(f.Filter); ok {
			continue
		}
		if held < h.b.opts.MaxSubscriptions {
			held++
			continue
		}
		if out == nil {
			out = append(packets.Subscriptions(nil), pk.Filters...)
		}
		out[i].Filter = ""
		h.b.stats.SubRefused.Add(1)
		if ok, n := h.b.refusedLog.Allow("subscriptions"); ok {
			h.b.log.Warn("subscription refused", "reason", "too_many_subscriptions", "client_id", cl.ID, "filter", f.Filter,
				"limit", h.b.opts.MaxSubscriptions, "refused_since_last_logged", n)
		}
	}
	if out != nil {
		pk.Filters = out
	}
	return pk
}

func (h *hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if s := h.b.session(cl); s != nil {
		for i, f := range pk.Filters {
			if i < len(codes) && codes[i] < 0x80 {
				s.subscribed(f.Filter, true)
			}
		}
	}
}

func (h *hook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if s := h.b.session(cl); s != nil {
		for _, f := range pk.Filters {
			s.subscribed(f.Filter, false)
		}
	}
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
		return pk, packets.ErrRejectPacket
	}
	s.received.Add(1)
	in, err := parseTopic(pk.TopicName)
	if err != nil {
		s.refuse(pk, packets.ErrTopicNameInvalid, ReasonMalformed, err)
		return pk, packets.ErrRejectPacket
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
	return pk, packets.ErrRejectPacket
}

func (h *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type == packets.Puback {
		if s := h.b.session(cl); s != nil {
			s.pubacked(pk.PacketID)
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
