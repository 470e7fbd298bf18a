package broker_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"

	"github.com/outpost-edge/outpost/broker"
	"github.com/outpost-edge/outpost/broker/brokertest"
	"github.com/outpost-edge/outpost/broker/client"
	"github.com/outpost-edge/outpost/store/identity/sas"
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

// An MQTT 5 client is listed with protocol 5.
func TestClientsListMQTT5(t *testing.T) {
	h := brokertest.New(t, brokertest.Options{Identities: []string{"dev5"}})
	conn, err := net.Dial("tcp", h.Addr("tcp"))
	must(t, err)
	c := paho5.NewClient(paho5.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho5.Connect{
		ClientID: "dev5", KeepAlive: 30, CleanStart: true,
		Username: brokertest.HubHost + "/dev5/?api-version=2021-04-12", UsernameFlag: true,
		Password:     []byte(sas.NewToken(brokertest.HubHost+"/devices/dev5", h.Keys["dev5"], "", time.Now().Add(time.Hour))),
		PasswordFlag: true,
	})
	if err != nil || ca.ReasonCode != 0 {
		t.Fatalf("connect: %v %+v", err, ca)
	}
	defer c.Disconnect(&paho5.Disconnect{})
	brokertest.Eventually(t, "dev5 listed", func() bool { return len(h.Broker.Clients()) == 1 })
	if got := h.Broker.Clients()[0]; got.ClientID != "dev5" || got.Protocol != "5" || got.Listener != "mqtt" {
		t.Errorf("listed as %+v", got)
	}
}
