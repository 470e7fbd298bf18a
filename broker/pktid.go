package broker

import (
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Packet ids. MQTT numbers the client's packets and the server's apart,
// but mochi keeps a client's in one inflight map and refuses a SUBSCRIBE
// or UNSUBSCRIBE whose id one of its own messages to the client holds
// (0x91, which an MQTT 3.1.1 client reads as a refused subscription). A
// client that comes back to its session, or subscribes while a message
// to it is unacknowledged, meets that often: clients and mochi both count
// from 1. So while such a packet is processed, the server's message that
// holds its id steps out of the map (OnPacketRead) and comes back right
// after (OnSubscribed, OnUnsubscribed, or the client's next packet); no
// other packet of the client is read meanwhile.

// stepAside takes the server's message that holds the id of an incoming
// SUBSCRIBE or UNSUBSCRIBE out of the inflight map.
func (s *session) stepAside(pk packets.Packet) {
	if t := pk.FixedHeader.Type; t != packets.Subscribe && t != packets.Unsubscribe {
		return
	}
	in, ok := s.cl.State.Inflight.Get(pk.PacketID)
	if !ok || in.FixedHeader.Type != packets.Publish && in.FixedHeader.Type != packets.Pubrel {
		return // free, or the client's own QoS 2 publish: its id, its clash
	}
	s.cl.State.Inflight.Delete(pk.PacketID)
	s.mu.Lock()
	s.aside = append(s.aside, in)
	s.mu.Unlock()
}

// stepBack puts the messages stepAside took back. One whose id a new
// message took meanwhile gets a free id: the client's acknowledgement of
// the old id then finds nothing and the message goes out again on its
// next connection (QoS 1 allows the duplicate; nothing is lost).
func (s *session) stepBack() {
	s.mu.Lock()
	aside := s.aside
	s.aside = nil
	s.mu.Unlock()
	for _, pk := range aside {
		if _, taken := s.cl.State.Inflight.Get(pk.PacketID); taken {
			id, ok := freeID(s.cl)
			if !ok {
				s.b.log.Error("no free packet id to keep an unacknowledged message; it is dropped", "client_id", s.id, "topic", pk.TopicName)
				atomic.AddInt64(&s.b.srv.Info.Inflight, -1)
				continue
			}
			pk.PacketID = id
		}
		s.cl.State.Inflight.Set(pk)
	}
}

// freeID is an id no message of cl holds, from the top of the range down
// (mochi numbers from the bottom).
func freeID(cl *mqtt.Client) (uint16, bool) {
	for id := 65535; id > 0; id-- {
		if _, taken := cl.State.Inflight.Get(uint16(id)); !taken {
			return uint16(id), true
		}
	}
	return 0, false
}

// stepBack of the session of cl, if it has one.
func (b *Broker) stepBack(cl *mqtt.Client) {
	if s := b.session(cl); s != nil {
		s.stepBack()
	}
}
