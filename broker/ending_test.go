package broker_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-edge/outpost/broker"
	"github.com/outpost-edge/outpost/broker/brokertest"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/identity/sas"
)

// Sessions end with their credentials, as on IoT Hub: these tests run the
// real broker and identity cache on 127.0.0.1 and connect paho clients
// with SAS tokens, then change identities the way the link's pull does
// (the cache), and watch the connections.

const module = brokertest.EdgeID + "/filter"

// connect opens a paho (MQTT 3.1.1) connection as id with a SAS token
// signed with the identity's key, valid until exp; lost is closed when the
// broker ends the connection.
func connect(t *testing.T, h *brokertest.Harness, id string, exp time.Time) (c paho.Client, lost chan struct{}) {
	t.Helper()
	d, m, _ := identity.SplitID(id)
	lost = make(chan struct{})
	o := paho.NewClientOptions().AddBroker("tcp://" + h.Addr("tcp")).SetClientID(id).
		SetUsername(brokertest.HubHost + "/" + id + "/?api-version=2021-04-12").
		SetPassword(sas.NewToken(sas.ResourceURI(brokertest.HubHost, d, m), h.Keys[id], "", exp)).
		SetAutoReconnect(false).SetProtocolVersion(4).
		SetConnectionLostHandler(func(paho.Client, error) { close(lost) })
	c = paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(10) })
	return c, lost
}

// ended waits up to within for the broker to close a connection.
func ended(t *testing.T, lost chan struct{}, within time.Duration, what string) {
	t.Helper()
	select {
	case <-lost:
	case <-time.After(within):
		t.Fatalf("%s: the session was not ended within %s", what, within)
	}
}

func stillConnected(t *testing.T, c paho.Client, lost chan struct{}, what string) {
	t.Helper()
	select {
	case <-lost:
		t.Fatalf("%s: the session was ended", what)
	default:
	}
	// The connection really works: a telemetry message is acknowledged.
	r := c.OptionsReader()
	id := r.ClientID()
	d, m, _ := identity.SplitID(id)
	topic := "devices/" + d + "/messages/events/"
	if m != "" {
		topic = "devices/" + d + "/modules/" + m + "/messages/events/"
	}
	if tok := c.Publish(topic, 1, false, "x"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("%s: publish after the change: %v", what, tok.Error())
	}
}

func change(t *testing.T, h *brokertest.Harness, id string, f func(*identity.Identity)) {
	t.Helper()
	idn, ok, err := h.Identities.Get(id)
	if err != nil || !ok {
		t.Fatalf("get %s: %v %v", id, ok, err)
	}
	f(&idn)
	if err := h.Identities.Put(context.Background(), idn); err != nil {
		t.Fatal(err)
	}
}

func TestSessionEndsWithItsCredentials(t *testing.T) {
	for _, c := range []struct {
		name, id string
		change   func(*testing.T, *brokertest.Harness, string)
	}{
		{"key rotated", "dev1", func(t *testing.T, h *brokertest.Harness, id string) {
			change(t, h, id, func(i *identity.Identity) { i.Auth.PrimaryKey = sas.GenerateKey() })
		}},
		{"secondary key rotated", "dev1", func(t *testing.T, h *brokertest.Harness, id string) {
			change(t, h, id, func(i *identity.Identity) { i.Auth.SecondaryKey = sas.GenerateKey() })
		}},
		{"switched to X.509", "dev1", func(t *testing.T, h *brokertest.Harness, id string) {
			change(t, h, id, func(i *identity.Identity) {
				i.Auth = identity.Auth{Type: identity.AuthSelfSigned, PrimaryThumbprint: "0123456789abcdef0123456789abcdef01234567"}
			})
		}},
		{"disabled", "dev1", func(t *testing.T, h *brokertest.Harness, id string) {
			change(t, h, id, func(i *identity.Identity) { i.Status = identity.Disabled })
		}},
		{"deleted", "dev1", func(t *testing.T, h *brokertest.Harness, id string) {
			if err := h.Identities.Delete(context.Background(), id); err != nil {
				t.Fatal(err)
			}
		}},
		{"deleted and created again", "dev1", func(t *testing.T, h *brokertest.Harness, id string) {
			change(t, h, id, func(i *identity.Identity) { i.Generation = identity.NewGeneration() })
		}},
		{"hub snapshot without it", "dev1", func(t *testing.T, h *brokertest.Harness, id string) {
			all, _ := h.Identities.List()
			var keep []identity.Identity
			for _, i := range all {
				if i.ID() != id {
					keep = append(keep, i)
				}
			}
			if err := h.Identities.Replace(context.Background(), keep); err != nil {
				t.Fatal(err)
			}
		}},
		{"module key rotated", module, func(t *testing.T, h *brokertest.Harness, id string) {
			change(t, h, id, func(i *identity.Identity) { i.Auth.PrimaryKey = sas.GenerateKey() })
		}},
		{"module deleted", module, func(t *testing.T, h *brokertest.Harness, id string) {
			if err := h.Identities.Delete(context.Background(), id); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := brokertest.New(t, brokertest.Options{Identities: []string{"dev1", "dev2", module, brokertest.EdgeID + "/other"}})
			exp := time.Now().Add(time.Hour)
			target, lost := connect(t, h, c.id, exp)
			others := map[string]paho.Client{}
			othersLost := map[string]chan struct{}{}
			for _, o := range []string{"dev1", "dev2", module, brokertest.EdgeID + "/other"} {
				if o != c.id {
					others[o], othersLost[o] = connect(t, h, o, exp)
				}
			}
			stillConnected(t, target, lost, "before the change")
			// Writing the identity unchanged ends nothing.
			change(t, h, c.id, func(*identity.Identity) {})
			c.change(t, h, c.id)
			ended(t, lost, 3*time.Second, c.name)
			for o, cl := range others {
				stillConnected(t, cl, othersLost[o], o+" after "+c.id+" changed")
			}
			if n := h.Broker.Stats().SessionsRevoked.Load(); n != 1 {
				t.Errorf("SessionsRevoked = %d, want 1", n)
			}
		})
	}
}

// A session ends when its SAS token expires, after the allowed skew, on
// the broker's clock; another session with a longer token goes on.
func TestSessionEndsWhenTokenExpires(t *testing.T) {
	h := brokertest.New(t, brokertest.Options{Identities: []string{"dev1", "dev2"}})
	// Valid at CONNECT only thanks to the skew, for 2 to 3 s more (a
	// token's expiry is in whole seconds).
	end := time.Now().Add(3 * time.Second).Truncate(time.Second)
	c, lost := connect(t, h, "dev1", end.Add(-sas.DefaultSkew))
	other, otherLost := connect(t, h, "dev2", time.Now().Add(time.Hour))
	time.Sleep(time.Until(end) - 500*time.Millisecond)
	stillConnected(t, c, lost, "before the token expired")
	ended(t, lost, 3*time.Second, "token expired")
	if now := time.Now(); now.Before(end) {
		t.Errorf("ended at %s, before the token's expiry plus the skew %s", now, end)
	}
	stillConnected(t, other, otherLost, "dev2, whose token is valid")
	if n := h.Broker.Stats().SessionsExpired.Load(); n != 1 {
		t.Errorf("SessionsExpired = %d, want 1", n)
	}
	// A token already expired (beyond the skew) is refused at CONNECT.
	o := paho.NewClientOptions().AddBroker("tcp://" + h.Addr("tcp")).SetClientID("dev1").
		SetUsername(brokertest.HubHost + "/dev1/?api-version=2021-04-12").
		SetPassword(sas.NewToken(brokertest.HubHost+"/devices/dev1", h.Keys["dev1"], "", time.Now().Add(-sas.DefaultSkew-time.Second))).
		SetAutoReconnect(false)
	cl := paho.NewClient(o)
	if tok := cl.Connect(); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		cl.Disconnect(10)
		t.Error("an expired token was accepted")
	}
}

// The token expires by the broker's clock (the edge's estimate of the
// time of day), not the system's.
func TestSessionExpiryFollowsTheEdgeClock(t *testing.T) {
	offset := -time.Hour // the edge knows the system clock is an hour ahead
	h := brokertest.New(t, brokertest.Options{Identities: []string{"dev1"},
		Broker: func(o *broker.Options) { o.Now = func() time.Time { return time.Now().Add(offset) } }})
	end := time.Now().Add(offset + 3*time.Second).Truncate(time.Second)
	c, lost := connect(t, h, "dev1", end.Add(-sas.DefaultSkew))
	time.Sleep(time.Second)
	stillConnected(t, c, lost, "by the system clock the token expired an hour ago, not by the edge's")
	ended(t, lost, 5*time.Second, "token expired on the edge's clock")
}

// An MQTT 5 client learns why: a DISCONNECT with reason 0x87 (not
// authorized) and the reason string.
func TestSessionEndedTellsMQTT5ClientWhy(t *testing.T) {
	h := brokertest.New(t, brokertest.Options{Identities: []string{"dev1"}})
	conn, err := net.Dial("tcp", h.Addr("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *paho5.Disconnect, 1)
	c := paho5.NewClient(paho5.ClientConfig{Conn: conn, OnServerDisconnect: func(d *paho5.Disconnect) { got <- d }})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho5.Connect{
		ClientID: "dev1", KeepAlive: 30, CleanStart: true,
		Username: brokertest.HubHost + "/dev1/?api-version=2021-04-12", UsernameFlag: true,
		Password:     []byte(sas.NewToken(brokertest.HubHost+"/devices/dev1", h.Keys["dev1"], "", time.Now().Add(time.Hour))),
		PasswordFlag: true,
	})
	if err != nil || ca.ReasonCode != 0 {
		t.Fatalf("connect: %v %+v", err, ca)
	}
	change(t, h, "dev1", func(i *identity.Identity) { i.Status = identity.Disabled })
	select {
	case d := <-got:
		if d.ReasonCode != 0x87 || d.Properties == nil || !strings.Contains(d.Properties.ReasonString, "disabled") {
			t.Errorf("DISCONNECT %#x %+v, want 0x87 with the reason", d.ReasonCode, d.Properties)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no DISCONNECT from the broker")
	}
}
