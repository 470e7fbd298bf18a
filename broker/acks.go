package broker

import (
	"errors"
	"sync"

	"github.com/mochi-mqtt/server/v2/packets"
)

// ackQueue sends PUBACKs in the order the PUBLISH packets arrived (MQTT
// requires it), each only once its message is durable. Completions arrive
// on store goroutines; the session's own goroutine writes the packets, so a
// slow client never stalls the store.
type ackQueue struct {
	s       *session
	max     int // entries pending at most (Options.MaxInflight)
	mu      sync.Mutex
	pending []*ackEntry
	wake    chan struct{}
	quit    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

type ackEntry struct {
	pid  uint16
	qos2 bool // answered by PUBREC: only ever a refusal (QoS 2 is accepted by mochi alone)
	done bool
	err  error
}

func (a *ackQueue) init(s *session) {
	a.s, a.max, a.wake, a.quit = s, s.b.opts.MaxInflight, make(chan struct{}, 1), make(chan struct{})
	a.wg.Add(1)
	go a.run()
}

// push queues the PUBACK of pid, or refuses (false) when max entries are
// pending: the client sent more than the Receive Maximum unacknowledged.
// Every QoS 1 publish goes through it, stored, answered at once or
// refused: a client that does not read its PUBACKs holds at most max.
func (a *ackQueue) push(pid uint16, qos byte) (*ackEntry, bool) {
	e := &ackEntry{pid: pid, qos2: qos == 2}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.max > 0 && len(a.pending) >= a.max {
		return nil, false
	}
	a.pending = append(a.pending, e)
	return e, true
}

// done marks e complete (err nil: durable) and wakes the writer.
func (a *ackQueue) done(e *ackEntry, err error) {
	a.mu.Lock()
	e.done, e.err = true, err
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *ackQueue) run() {
	defer a.wg.Done()
	for {
		select {
		case <-a.wake:
			a.flush()
		case <-a.quit:
			return
		}
	}
}

// flush writes the PUBACKs of every completed entry at the head of the
// queue in one write: one system call for a whole group commit's worth of
// acknowledgements instead of one per message.
func (a *ackQueue) flush() {
	a.mu.Lock()
	n := 0
	for n < len(a.pending) && a.pending[n].done {
		n++
	}
	ready := append([]*ackEntry(nil), a.pending[:n]...)
	a.pending = a.pending[n:]
	a.mu.Unlock()
	if len(ready) == 0 {
		return
	}
	v5 := a.s.cl.Properties.ProtocolVersion == 5
	buf := make([]byte, 0, 5*len(ready))
	for _, e := range ready {
		if e.err == nil {
			if e.pid != 0 {
				buf = append(buf, 0x40, 2, byte(e.pid>>8), byte(e.pid))
			}
			continue
		}
		// MQTT 3.1.1 has no negative PUBACK, and some refusals end the
		// connection: acknowledge what came before, then disconnect.
		if !v5 || disconnects(e.err) {
			a.writeRaw(buf)
			_ = a.s.b.srv.DisconnectClient(a.s.cl, refusalCode(e.err))
			return
		}
		typ := byte(packets.Puback << 4)
		if e.qos2 {
			typ = packets.Pubrec << 4
		}
		buf = append(buf, typ, 3, byte(e.pid>>8), byte(e.pid), refusalCode(e.err).Code)
	}
	a.writeRaw(buf)
}

func disconnects(err error) bool {
	var r refusal
	return errors.As(err, &r) && r.disconnect
}

func refusalCode(err error) packets.Code {
	var r refusal
	if errors.As(err, &r) {
		return r.code
	}
	return packets.ErrUnspecifiedError
}

// writeRaw writes encoded packets under the client's write lock, as mochi's
// own WritePacket does, so bytes never interleave.
func (a *ackQueue) writeRaw(b []byte) {
	cl := a.s.cl
	if len(b) == 0 || cl.Closed() {
		return
	}
	cl.Lock()
	defer cl.Unlock()
	if _, err := cl.Net.Conn.Write(b); err != nil {
		a.s.b.log.Debug("write PUBACKs", "client_id", a.s.id, "err", err)
	}
}

func (a *ackQueue) stop() {
	a.once.Do(func() { close(a.quit) })
	a.wg.Wait()
}
