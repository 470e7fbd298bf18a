package broker

import (
	"log/slog"
	"net"
	"sync"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// netListener serves MQTT over TCP or TLS on a guarded listener. It
// replaces mochi's listeners.Net, whose accept loop shares one error
// variable between the goroutines of all connections (a data race when two
// end at once).
type netListener struct {
	id   string
	ln   net.Listener
	log  *slog.Logger
	once sync.Once
	// closeClients disconnects this listener's clients at Close, in place
	// of mochi's (Broker.closeListenerClients says why).
	closeClients func(id string)
	handoff      handoff
}

// handoff tracks the connections a listener handed to mochi until their
// establish call returns, so the listener's Close can end them and wait.
// mochi's Close waits on a WaitGroup that each establish call adds to: a
// connection accepted just before Close whose goroutine reached the Add
// after that Wait began was a data race in mochi's WaitGroup (seen in CI,
// TestCloseWhileClientsComeAndGo) and a client attached to a closed server.
type handoff struct {
	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// start registers c before it goes to mochi; false (c closed) once the
// listener is closing.
func (h *handoff) start(c net.Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		_ = c.Close()
		return false
	}
	if h.conns == nil {
		h.conns = map[net.Conn]struct{}{}
	}
	h.conns[c] = struct{}{}
	h.wg.Add(1)
	return true
}

// end is called when c's establish call has returned.
func (h *handoff) end(c net.Conn) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
	h.wg.Done()
}

// close refuses new connections, closes those still being established or
// served (their clients were disconnected already, or never attached) and
// waits until every establish call has returned.
func (h *handoff) close() {
	h.mu.Lock()
	h.closed = true
	open := make([]net.Conn, 0, len(h.conns))
	for c := range h.conns {
		open = append(open, c)
	}
	h.mu.Unlock()
	for _, c := range open {
		_ = c.Close()
	}
	h.wg.Wait()
}

func (l *netListener) ID() string       { return l.id }
func (l *netListener) Address() string  { return l.ln.Addr().String() }
func (l *netListener) Protocol() string { return "tcp" }

func (l *netListener) Init(log *slog.Logger) error {
	l.log = log
	return nil
}

// Serve accepts until the listener is closed; guardListener.Accept
// returns only admitted connections and an error only when closed.
func (l *netListener) Serve(establish listeners.EstablishFn) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		if !l.handoff.start(c) {
			continue // closing: Accept fails next
		}
		go func() {
			defer l.handoff.end(c)
			if err := establish(l.id, c); err != nil {
				l.log.Debug("client ended", "listener", l.id, "err", err)
			}
		}()
	}
}

func (l *netListener) Close(listeners.CloseFn) {
	l.once.Do(func() {
		l.closeClients(l.id)
		_ = l.ln.Close()
		l.handoff.close()
	})
}
