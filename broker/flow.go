package broker

import (
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Flow control towards an MQTT 5 client (its Receive Maximum) on free
// topics is mochi's, with a flaw this file repairs. A QoS 1 or 2 message
// the window holds back waits in the client's inflight map, marked with
// Expiry -1; when the client next sends a packet and the window has room,
// mochi writes it and then deletes it from the map. Its acknowledgement
// then finds nothing, so the slot it took is never given back: after a
// burst larger than its window the client receives no QoS 1 or 2 message
// again, and the message is not sent again if the connection drops.
//
// The write is seen here (OnPacketSent of a PUBLISH with Expiry -1) and
// the message put back in the map, with Expiry 0 so that it is not sent a
// second time, before the next packet of the client is processed (its
// acknowledgement, typically) and when its connection ends.

// heldSent records a held-back message mochi has just written.
func (s *session) heldSent(pk packets.Packet) {
	s.mu.Lock()
	s.held = append(s.held, pk)
	s.mu.Unlock()
	s.b.held.Add(1)
}

// restoreHeld puts the held-back messages written since the last call
// back in the client's inflight map, where their acknowledgement finds
// them.
func (s *session) restoreHeld() {
	s.mu.Lock()
	held := s.held
	s.held = nil
	s.mu.Unlock()
	for _, pk := range held {
		pk.Expiry = 0
		if s.cl.State.Inflight.Set(pk) {
			atomic.AddInt64(&s.b.srv.Info.Inflight, 1)
		}
	}
	s.b.held.Add(-int64(len(held)))
}

// OnPacketSent notices the held-back messages mochi writes.
func (h *hook) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos == 0 || pk.Expiry >= 0 {
		return
	}
	if s := h.b.session(cl); s != nil {
		s.heldSent(pk)
	}
}

// restoreHeld restores the held-back messages of cl, if any were written.
func (b *Broker) restoreHeld(cl *mqtt.Client) {
	if b.held.Load() == 0 {
		return
	}
	if s := b.session(cl); s != nil {
		s.restoreHeld()
	}
}
