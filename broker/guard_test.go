package broker

import (
	"bytes"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/store/queue"
)

// closedWithin fails unless the server closes c within d; it returns how
// long that took.
func closedWithin(t *testing.T, c net.Conn, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(d))
	buf := make([]byte, 64)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue // e.g. a CONNACK or an HTTP answer: keep waiting for the close
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("connection still open after %s", d)
		}
		return time.Since(start)
	}
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A connection that sends nothing, half a CONNECT, or stalls its TLS
// handshake or WebSocket upgrade is closed at the pre-auth deadline.
func TestUnauthenticatedConnectionsClosedAtDeadline(t *testing.T) {
	e := newEnvWith(t, "", queue.Options{}, func(o *Options) {
		o.ConnectTimeout = 300 * time.Millisecond
		o.TLS, o.WS = "127.0.0.1:0", "127.0.0.1:0"
		o.TLSConfig = &tls.Config{}
	})
	halfConnect := []byte{0x10, 0x20, 0x00, 0x04, 'M', 'Q'}   // announces 32 bytes, sends 4
	clientHello := []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01} // a TLS record header, then nothing
	for _, tc := range []struct {
		name, listener string
		send           []byte
	}{
		{"silent", "tcp", nil},
		{"half CONNECT", "tcp", halfConnect},
		{"silent TLS", "tls", nil},
		{"stalled TLS handshake", "tls", clientHello},
		{"silent WebSocket", "ws", nil},
		{"stalled WebSocket TLS handshake", "ws", clientHello},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, e.b.Addr(tc.listener).String())
			if _, err := c.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			if took := closedWithin(t, c, 3*time.Second); took < 250*time.Millisecond || took > 2*time.Second {
				t.Fatalf("closed after %s; want the 300ms deadline", took)
			}
		})
	}
	waitFor(t, "every connection released", func() bool { return e.b.Stats().Connections.Load() == 0 })
	if n := e.b.Stats().ConnRefusedBy[ConnTimeout].Load(); n != 6 {
		t.Errorf("timeouts counted %d, want one per connection, WebSocket upgrades included", n)
	}
}

// After a WebSocket upgrade (net/http clears its deadlines once the
// request is read) the pre-auth deadline still holds until CONNECT.
func TestUpgradedWebSocketClosedAtDeadline(t *testing.T) {
	e := newEnvWith(t, "", queue.Options{}, func(o *Options) {
		o.ConnectTimeout = 300 * time.Millisecond
		o.WS = "127.0.0.1:0"
	})
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}}
	start := time.Now()
	ws, _, err := d.Dial("ws://"+e.b.Addr("ws").String()+"/$iothub/websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	took := closedWithin(t, ws.UnderlyingConn(), 3*time.Second) + time.Since(start)
	if took > 2*time.Second {
		t.Fatalf("closed after %s; want the 300ms deadline", took)
	}
}

// A fixed header announcing a 200 KiB CONNECT is refused before mochi
// allocates it, and so is a first packet that is not CONNECT.
func TestOversizeOrWrongFirstPacketClosedAtOnce(t *testing.T) {
	e := newEnvWith(t, "", queue.Options{}, func(o *Options) { o.ConnectTimeout = 10 * time.Second })
	for _, tc := range []struct {
		name   string
		send   []byte
		reason ConnReason
	}{
		{"200 KiB CONNECT", []byte{0x10, 0x80, 0x80, 0x0c}, ConnTooLarge}, // 200 KiB = 0x32000
		{"PUBLISH first", []byte{0x30, 0x05, 0, 1, 'a', 'b', 'c'}, ConnNotConnect},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, e.addr)
			if _, err := c.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			if took := closedWithin(t, c, 3*time.Second); took > time.Second {
				t.Fatalf("closed after %s; want at once", took)
			}
			if n := e.b.Stats().ConnRefusedBy[tc.reason].Load(); n != 1 {
				t.Fatalf("refusals counted as %s: %d, want 1", tc.reason, n)
			}
		})
	}
}

// The pre-auth deadline ends with authentication: a client with keepalive 0
// (mochi then clears the deadline) outlives it many times over, over TCP
// and over WebSocket.
func TestAuthenticatedKeepaliveZeroNotCut(t *testing.T) {
	e := newEnvWith(t, "", queue.Options{}, func(o *Options) {
		o.ConnectTimeout = 200 * time.Millisecond
		o.WS = "127.0.0.1:0"
	})
	for _, url := range []string{"tcp://" + e.addr, "ws://" + e.b.Addr("ws").String() + "/$iothub/websocket"} {
		o := paho.NewClientOptions().AddBroker(url).SetClientID("dev1").
			SetUsername("hub.example/dev1/?api-version=2021-04-12").SetPassword("pw").
			SetAutoReconnect(false).SetKeepAlive(0).SetProtocolVersion(4)
		c := paho.NewClient(o)
		wait(t, c.Connect())
		time.Sleep(time.Second)
		if !c.IsConnected() {
			t.Fatalf("%s: an authenticated client was cut by the pre-auth deadline", url)
		}
		wait(t, c.Publish("devices/dev1/messages/events/", 1, false, "after the deadline"))
		c.Disconnect(10)
	}
}

// The total cap refuses one connection too many; the per-IP cap counts only
// unauthenticated connections, so authenticated clients from the same
// address are never limited by it.
func TestConnectionCaps(t *testing.T) {
	e := newEnvWith(t, "", queue.Options{}, func(o *Options) {
		o.MaxConnections, o.MaxPendingPerIP = 6, 2
	})
	for _, id := range []string{"dev1", "dev2", edgeID + "/a"} { // 3 > the per-IP cap of 2
		e.client(id, "pw")
	}
	idle := dialRaw(t, e.addr) // 2 unauthenticated: the per-IP cap
	dialRaw(t, e.addr)
	closedWithin(t, dialRaw(t, e.addr), time.Second)
	if n := e.b.Stats().ConnRefusedBy[ConnTooManyPending].Load(); n != 1 {
		t.Fatalf("refused for too many pending: %d, want 1", n)
	}
	idle.Close()
	waitFor(t, "the idle connection released", func() bool { return e.b.Stats().Connections.Load() == 4 })
	e.client(edgeID+"/b", "pw")
	dialRaw(t, e.addr) // the 6th connection: the total cap
	closedWithin(t, dialRaw(t, e.addr), time.Second)
	if n := e.b.Stats().ConnRefusedBy[ConnTooMany].Load(); n != 1 {
		t.Fatalf("refused for too many connections: %d, want 1", n)
	}
}

// A client may hold MaxSubscriptions filters; the one past it gets a
// failure code in the SUBACK.
func TestSubscriptionCap(t *testing.T) {
	e := newEnvWith(t, "", queue.Options{}, func(o *Options) { o.MaxSubscriptions = 2 })
	c := e.client("dev1", "pw")
	tok := c.SubscribeMultiple(map[string]byte{"$iothub/twin/res/#": 1, "$iothub/methods/POST/#": 1}, nil)
	wait(t, tok)
	tok = c.SubscribeMultiple(map[string]byte{"devices/dev1/messages/devicebound/#": 1, "$iothub/twin/res/#": 1}, nil)
	wait(t, tok)
	got := tok.(*paho.SubscribeToken).Result()
	if got["devices/dev1/messages/devicebound/#"] != 0x80 || got["$iothub/twin/res/#"] != 1 {
		t.Fatalf("SUBACK %v: want 0x80 for the third filter, a renewed one granted", got)
	}
	if n := e.b.Stats().SubRefused.Load(); n != 1 {
		t.Fatalf("refused subscriptions counted %d, want 1", n)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// A client that leaves more QoS 1 publishes unacknowledged than
// MaxInflight (it never reads its PUBACKs' effect: it sends a burst far
// faster than the store acknowledges) is disconnected.
func TestInflightCap(t *testing.T) {
	e := newEnvWith(t, "", queue.Options{}, func(o *Options) { o.MaxInflight = 2 })
	c := dialRaw(t, e.addr)
	var buf bytes.Buffer
	connect := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "dev1", Clean: true, Keepalive: 30,
			UsernameFlag: true, Username: []byte("hub.example/dev1/?api-version=2021-04-12"), PasswordFlag: true, Password: []byte("pw")}}
	if err := connect.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 500; i++ {
		pub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: 4,
			TopicName: "devices/dev1/messages/events/", PacketID: uint16(i), Payload: []byte("x")}
		if err := pub.PublishEncode(&buf); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	closedWithin(t, c, 3*time.Second)
	if n := e.b.Stats().RefusedBy[ReasonInflight].Load(); n != 1 {
		t.Fatalf("refused as inflight: %d, want 1", n)
	}
}

// A client that repeats a denied QoS 0 publish (mochi drops it and keeps
// the client) or reconnects with a wrong key is counted every time but
// logged at most once per period.
func TestDeniedAndAuthLoggedWithoutFlooding(t *testing.T) {
	var log syncBuffer
	e := newEnvWith(t, "", queue.Options{}, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&log, nil)) })
	for range 3 {
		if _, err := e.dial("dev1", "wrong"); err == nil {
			t.Fatal("wrong password accepted")
		}
	}
	c := e.client("dev2", "pw")
	for range 50 {
		c.Publish("devices/dev1/messages/events/", 0, false, "spoof").Wait()
	}
	waitFor(t, "50 denied publishes", func() bool { return e.b.Stats().Denied.Load() >= 50 })
	if n := e.b.Stats().AuthFailed.Load(); n != 3 {
		t.Fatalf("auth failures counted %d, want 3", n)
	}
	out := log.String()
	if n := strings.Count(out, "refused topic outside the client's identity"); n != 1 {
		t.Errorf("denied publish logged %d times, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "reason=bad_credentials"); n != 1 {
		t.Errorf("failed authentication logged %d times, want 1:\n%s", n, out)
	}
}

// syncBuffer is a bytes.Buffer safe for the broker's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
