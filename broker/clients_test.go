package broker_test

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/broker"
	"github.com/outpost-edge/outpost/broker/brokertest"
	"github.com/outpost-edge/outpost/broker/client"
	"github.com/outpost-edge/outpost/store/queue"
)

// The broker lists its connected clients: a module over plain MQTT and a
// leaf device over TLS, each with its identity, listener, remote address,
// protocol, subscriptions and counters; a client that disconnects is no
// longer listed.
func TestClientsListed(t *testing.T) {
	caPEM, cert := brokertest.EdgeCA(t)
	h := brokertest.New(t, brokertest.Options{Identities: []string{module, "leaf1"}, Broker: func(o *broker.Options) {
		o.TLS = "127.0.0.1:0"
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}})
	if got := h.Broker.Clients(); len(got) != 0 {
		t.Fatalf("clients before any connected: %+v", got)
	}
	before := time.Now()
	mod := h.Client(module)
	must(t, mod.Connect(h.Context()))
	must(t, mod.SendEvent(h.Context(), client.Message{Body: []byte(`{"t":1}`)}))
	must(t, mod.SendEvent(h.Context(), client.Message{Body: []byte(`{"t":2}`)}))

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	leaf := h.Client("leaf1", client.WithBroker("ssl://"+h.Addr("tls")), client.WithRootCAs(roots))
	got := make(chan client.Message, 1)
	leaf.OnC2D(func(m client.Message) { got <- m })
	must(t, leaf.Connect(h.Context()))
	must(t, h.Broker.SendC2D(h.Context(), "leaf1", queue.Message{Body: []byte("go")}))
	select {
	case <-got:
	case <-time.After(brokertest.Timeout):
		t.Fatal("no C2D message at the leaf")
	}
	brokertest.Eventually(t, "the leaf's C2D acknowledged", func() bool {
		cs := h.Broker.Clients()
		return len(cs) == 2 && cs[1].Delivered == 1 && cs[1].Inflight == 0
	})

	cs := h.Broker.Clients()
	m, l := cs[0], cs[1]
	if m.ClientID != module || m.DeviceID != brokertest.EdgeID || m.ModuleID != "filter" || m.Listener != "mqtt" ||
		m.Protocol != "3.1.1" || m.Received != 2 || m.Delivered != 0 {
		t.Errorf("module listed as %+v", m)
	}
	if l.ClientID != "leaf1" || l.DeviceID != "leaf1" || l.ModuleID != "" || l.Listener != "mqtts" || l.Subscriptions < 1 {
		t.Errorf("leaf listed as %+v", l)
	}
	for _, c := range cs {
		if c.RemoteAddr == "" || c.Since.Before(before.Add(-time.Second)) || c.Since.After(time.Now()) {
			t.Errorf("%s: remote %q, since %v", c.ClientID, c.RemoteAddr, c.Since)
		}
	}

	must(t, mod.Close())
	brokertest.Eventually(t, "the module no longer listed", func() bool {
		cs := h.Broker.Clients()
		return len(cs) == 1 && cs[0].ClientID == "leaf1"
	})
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
