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
		go func() {
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
	})
}
