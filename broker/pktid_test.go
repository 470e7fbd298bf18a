package broker

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// rawClient speaks MQTT 3.1.1 by hand, so a test chooses its packet ids
// and when (if ever) it acknowledges.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// rawConn opens a TCP connection for a rawClient; it sends nothing yet.
func rawConn(t *testing.T, addr string) *rawClient {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, conn: conn, r: bufio.NewReader(conn)}
}

func dialRawMQTT(t *testing.T, addr, id string) *rawClient {
	c := rawConn(t, addr)
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: id, Keepalive: 30}})
	if fh, body := c.read(); fh.Type != packets.Connack || body[1] != 0 {
		t.Fatalf("CONNACK %v %x", fh.Type, body)
	}
	return c
}

func (c *rawClient) send(pk packets.Packet) {
	c.t.Helper()
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	}
	if err == nil {
		_, err = c.conn.Write(buf.Bytes())
	}
	if err != nil {
		c.t.Fatal(err)
	}
}

// read returns the next packet's fixed header and body.
func (c *rawClient) read() (packets.FixedHeader, []byte) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	hb, err := c.r.ReadByte()
	if err != nil {
		c.t.Fatal(err)
	}
	var fh packets.FixedHeader
	if err := fh.Decode(hb); err != nil {
		c.t.Fatal(err)
	}
	n, err := binary.ReadUvarint(c.r)
	if err != nil {
		c.t.Fatal(err)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		c.t.Fatal(err)
	}
	return fh, body
}

func (c *rawClient) subscribe(id uint16, filter string) byte {
	c.t.Helper()
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: id, ProtocolVersion: 4,
		Filters: packets.Subscriptions{{Filter: filter, Qos: 1}}})
	for {
		fh, body := c.read()
		if fh.Type == packets.Suback {
			if got := binary.BigEndian.Uint16(body); got != id {
				c.t.Fatalf("SUBACK for id %d, want %d", got, id)
			}
			return body[2]
		}
	}
}

// A client may SUBSCRIBE with the packet id of a message the server sent
// it and it has not acknowledged yet (MQTT numbers each side's packets
// apart): the subscription is granted, and the message's acknowledgement
// still completes it.
func TestSubscribeWithTheIdOfAnUnacknowledgedMessage(t *testing.T) {
	e := newGenericEnv(t, "loopback")
	c := dialRawMQTT(t, e.addr, "raw")
	if code := c.subscribe(7, "open/x"); code != 1 {
		t.Fatalf("SUBACK %#x", code)
	}
	pub, err := e.dial311("pub", "", "")
	if err != nil {
		t.Fatal(err)
	}
	wait(t, pub.Publish("open/x", 1, false, "m1"))
	fh, body := c.read()
	if fh.Type != packets.Publish || fh.Qos != 1 {
		t.Fatalf("got %v qos %d", fh.Type, fh.Qos)
	}
	tl := int(binary.BigEndian.Uint16(body))
	pid := binary.BigEndian.Uint16(body[2+tl:])
	if code := c.subscribe(pid, "open/y"); code != 1 {
		t.Fatalf("SUBSCRIBE with the id %d of the unacknowledged message: SUBACK %#x, want 1 (granted)", pid, code)
	}
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pid, ProtocolVersion: 4})
	waitFor(t, "the message acknowledged", func() bool {
		s := e.b.sessionOf("raw")
		return s != nil && s.cl.State.Inflight.Len() == 0
	})
}

// A PUBLISH that names its topic by an alias the connection never set
// (an alias of a previous connection, say) ends the connection with 0x94
// and is neither acknowledged nor delivered.
func TestUnknownTopicAliasEndsTheConnection(t *testing.T) {
	e := newGenericEnv(t, "loopback")
	c := rawConn(t, e.addr)
	conn := c.conn
	var buf bytes.Buffer
	connect := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "alias", Keepalive: 30, Clean: true}}
	if err := connect.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	pub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 1, ProtocolVersion: 5,
		Properties: packets.Properties{TopicAlias: 3, TopicAliasFlag: true}, Payload: []byte("x")}
	if err := pub.PublishEncode(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if fh, _ := c.read(); fh.Type != packets.Connack {
		t.Fatalf("got %v, want CONNACK", fh.Type)
	}
	fh, body := c.read()
	if fh.Type != packets.Disconnect || len(body) == 0 || body[0] != 0x94 {
		t.Fatalf("got %v %x, want DISCONNECT 0x94", fh.Type, body)
	}
	if n := e.b.Stats().TopicReceived.Load(); n != 0 {
		t.Fatalf("%d free-topic messages taken", n)
	}
}

// MQTT 3.1.1: an empty client id with clean session 0 is answered with
// return code 2, identifier rejected [MQTT-3.1.3-8], not mochi's 0x80.
func TestEmptyClientIDWithSessionRejected(t *testing.T) {
	e := newGenericEnv(t, "loopback")
	c := rawConn(t, e.addr)
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Keepalive: 30, Clean: false}})
	if fh, body := c.read(); fh.Type != packets.Connack || len(body) < 2 || body[1] != 2 {
		t.Fatalf("got %v %x, want CONNACK with return code 2", fh.Type, body)
	}
}
