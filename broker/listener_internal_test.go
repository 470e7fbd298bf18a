package broker

import (
	"log/slog"
	"net"
	"testing"
)

// TestListenersCloseClientsThemselves: a listener's Close disconnects its
// clients through the broker's closeListenerClients, never through the
// CloseFn mochi hands it, whose Clients.GetByListener can deadlock against a
// client attaching or leaving (it takes a read lock twice).
func TestListenersCloseClientsThemselves(t *testing.T) {
	for _, name := range []string{"tcp", "ws"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var closed []string
		own := func(id string) { closed = append(closed, id) }
		mochis := func(id string) { t.Errorf("%s: Close called mochi's CloseFn for %q", name, id) }
		switch name {
		case "tcp":
			l := &netListener{id: name, ln: ln, closeClients: own}
			l.Close(mochis)
		case "ws":
			l := newWebsocket(name, ln, 0)
			l.closeClients = own
			if err := l.Init(slog.New(slog.DiscardHandler)); err != nil {
				t.Fatal(err)
			}
			l.Close(mochis)
			_ = ln.Close()
		}
		if len(closed) != 1 || closed[0] != name {
			t.Errorf("%s: closed the clients of %v, want [%s]", name, closed, name)
		}
	}
}
