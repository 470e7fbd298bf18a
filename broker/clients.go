package broker

import (
	"sort"
	"time"
)

// ClientInfo describes one connected MQTT client, as an operator of
// Mosquitto or EMQX expects to list them.
type ClientInfo struct {
	ClientID string // the identity ("device" or "device/module")
	DeviceID string
	ModuleID string // "" for a device
	// Listener is where it connected: "mqtt" (plain TCP), "mqtts" (TLS),
	// "ws" (WebSocket) or "wss" (WebSocket over TLS).
	Listener   string
	RemoteAddr string
	Protocol   string    // "3.1.1" or "5"
	Since      time.Time // when the session was established, on Options.Now's clock
	// Subscriptions is the topic filters it holds; Inflight the messages
	// sent to it and not yet acknowledged (its inputs or C2D messages and
	// QoS > 0 free-topic messages).
	Subscriptions, Inflight int
	// Received is the PUBLISH packets it sent on this connection (telemetry,
	// twin and method traffic, free topics); Delivered the queued messages
	// (module inputs, C2D) it acknowledged.
	Received, Delivered int64
}

// Clients lists the connected clients, sorted by client id; at most
// MaxConnections (one session per connection). The sessions are copied
// under the broker's lock and read after it is released: nothing here
// holds a lock while calling into mochi (see guard.go on
// Clients.GetByListener).
func (b *Broker) Clients() []ClientInfo {
	b.mu.Lock()
	ss := make([]*session, 0, len(b.sessions))
	for _, s := range b.sessions {
		ss = append(ss, s)
	}
	b.mu.Unlock()
	out := make([]ClientInfo, 0, len(ss))
	for _, s := range ss {
		if s.cl.Closed() {
			continue // ended meanwhile; OnDisconnect is on its way
		}
		out = append(out, s.info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ClientID < out[j].ClientID })
	return out
}

func (s *session) info() ClientInfo {
	cl := s.cl
	c := ClientInfo{ClientID: s.id, DeviceID: s.device, ModuleID: s.module, Listener: s.b.listenerName(cl.Net.Listener),
		RemoteAddr: cl.Net.Remote, Protocol: "3.1.1", Since: s.since,
		Inflight: int(s.outstanding.Load()), Received: s.received.Load(), Delivered: s.delivered.Load()}
	if cl.Properties.ProtocolVersion == 5 {
		c.Protocol = "5"
	}
	if subs := cl.State.Subscriptions; subs != nil {
		c.Subscriptions = subs.Len()
	}
	if inf := cl.State.Inflight; inf != nil {
		c.Inflight += inf.Len()
	}
	return c
}

// listenerName is the scheme-like name of a listener id (Start).
func (b *Broker) listenerName(id string) string {
	switch id {
	case "tcp":
		return "mqtt"
	case "tls":
		return "mqtts"
	case "ws":
		if b.opts.TLSConfig != nil {
			return "wss"
		}
		return "ws"
	}
	return id
}
