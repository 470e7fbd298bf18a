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
	mu      sync.Mutex
	pending []*ackEntry
	wake    chan struct{}
	quit    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

type ackEntry struct {
	pid  uint16
	done bool
	err  error
}

func (a *ackQueue) init(s *session) {
	a.s, a.wake, a.quit = s, make(chan struct{}, 1), make(chan struct{})
	a.wg.Add(1)
	go a.run()
}

func (a *ackQueue) push(pid uint16) *ackEntry {
	e := &ackEntry{pid: pid}
	a.mu.Lock()
	a.pending = append(a.pending, e)
	a.mu.Unlock()
	return e
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

func (a *ackQueue) flush() {
	for {
		a.mu.Lock()
		if len(a.pending) == 0 || !a.pending[0].done {
			a.mu.Unlock()
			return
		}
		e := a.pending[0]
		a.pending = a.pending[1:]
		a.mu.Unlock()
		if !a.send(e) {
			return
		}
	}
}

// send writes the PUBACK of e; it reports false when the client was
// disconnected instead.
func (a *ackQueue) send(e *ackEntry) bool {
	cl := a.s.cl
	if e.err == nil {
		if e.pid != 0 {
			_ = write(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: e.pid})
		}
		return true
	}
	code := packets.ErrUnspecifiedError
	var r refusal
	if errors.As(e.err, &r) {
		code = r.code
	}
	if cl.Properties.ProtocolVersion == 5 {
		_ = write(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: e.pid, ReasonCode: code.Code})
		return true
	}
	_ = a.s.b.srv.DisconnectClient(cl, code)
	return false
}

func (a *ackQueue) stop() {
	a.once.Do(func() { close(a.quit) })
	a.wg.Wait()
}
