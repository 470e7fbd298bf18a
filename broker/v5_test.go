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

// A publish to a topic in the device's own IoT Hub namespace that the edge
// does not serve is refused, never acknowledged: MQTT 5 gets PUBACK 0x90,
// MQTT 3.1.1 is disconnected. Both are counted under the "topic" reason.
func TestUnservedTopicRefused(t *testing.T) {
	e := newEnv(t, "", queue.Options{})
	c := e.v5client("dev1")
	for _, topic := range []string{"devices/dev1/messages/eventsX", "devices/dev1/messages/events2/a=b"} {
		r, err := c.Publish(context.Background(), &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("x")})
		if r == nil {
			t.Fatalf("publish to %s: %v", topic, err)
		}
		if r.ReasonCode != 0x90 {
			t.Errorf("publish to %s: PUBACK reason %#x, want 0x90 (topic name invalid)", topic, r.ReasonCode)
		}
	}
	if r, err := c.Publish(context.Background(), &paho.Publish{Topic: "devices/dev1/messages/events/", QoS: 1, Payload: []byte("ok")}); r == nil || r.ReasonCode != 0 {
		t.Fatalf("telemetry after the refusals: %v %+v", err, r)
	}

	v3 := e.client("dev2", "pw")
	v3.Publish("devices/dev2/messages/eventsX", 1, false, "x").WaitTimeout(time.Second)
	expectDisconnected(t, v3, "MQTT 3.1.1 client publishing to an unserved topic stays connected")
	if d := e.queue(QueueName("$upstream", route.DefaultPriority)).Stats().Depth; d != 1 {
		t.Errorf("queue depth %d, want only the one telemetry message", d)
	}
	st := e.b.Stats()
	if n := st.RefusedBy[ReasonTopic].Load(); n != 3 {
		t.Errorf("refused for reason topic = %d, want 3", n)
	}
	if st.Refused.Load() != 3 {
		t.Errorf("refused total = %d, want 3", st.Refused.Load())
	}
}
