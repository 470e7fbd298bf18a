package broker

import (
	"context"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/outpost-edge/outpost/broker/route"
	"github.com/outpost-edge/outpost/store/queue"
)

// v5client connects an MQTT 5 client (paho.golang) as id.
func (e *env) v5client(id string) *paho.Client {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{
		ClientID: id, KeepAlive: 30, CleanStart: true,
		Username: "hub.example/" + id + "/?api-version=2021-04-12", UsernameFlag: true,
		Password: []byte("pw"), PasswordFlag: true,
	})
	if err != nil || ca.ReasonCode != 0 {
		e.t.Fatalf("connect %s: %v %+v", id, err, ca)
	}
	e.t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

// MQTT 5 clients get a PUBACK with reason 0x97 (quota exceeded) when the
// queue is full, and keep their connection; user properties are stored as
// application properties.
func TestV5QuotaExceededAndUserProperties(t *testing.T) {
	e := newEnv(t, "", queue.Options{TotalMaxCount: 1})
	c := e.v5client("dev1")
	ctx := context.Background()
	pub := func(body string) *paho.PublishResponse {
		r, err := c.Publish(ctx, &paho.Publish{
			Topic: "devices/dev1/messages/events/" + url.QueryEscape("$.mid") + "=" + body, QoS: 1, Payload: []byte(body),
			Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "unit", Value: "C"}}},
		})
		if err != nil && r == nil {
			t.Fatalf("publish %s: %v", body, err)
		}
		return r
	}
	if r := pub("one"); r.ReasonCode != 0 {
		t.Fatalf("first publish: reason %#x", r.ReasonCode)
	}
	if r := pub("two"); r.ReasonCode != 0x97 {
		t.Fatalf("publish into a full queue: reason %#x, want 0x97", r.ReasonCode)
	}
	msgs, _ := e.queue(QueueName("$upstream", route.DefaultPriority)).Read(0, 10)
	if len(msgs) != 1 || msgs[0].ID != "one" || msgs[0].Props["unit"] != "C" {
		t.Fatalf("queue holds %+v", msgs)
	}
}
