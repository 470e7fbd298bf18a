package broker

import (
	"context"
	"net/url"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/outpost-edge/outpost/broker/route"
	"github.com/outpost-edge/outpost/store/disk/disktest"
	"github.com/outpost-edge/outpost/store/queue"
)

func v5pub(t *testing.T, c *paho.Client, device, body string) byte {
	t.Helper()
	r, err := c.Publish(context.Background(), &paho.Publish{
		Topic: "devices/" + device + "/messages/events/" + url.QueryEscape("$.mid") + "=" + body, QoS: 1, Payload: []byte(body)})
	if err != nil && r == nil {
		t.Fatalf("publish %s: %v", body, err)
	}
	return r.ReasonCode
}

// Below the disk reserve an MQTT 5 publisher gets 0x97 and the refusal is
// counted with reason disk; a cap counts as quota.
func TestDiskBelowReserveRefusedWithQuotaExceeded(t *testing.T) {
	mon := disktest.Low(t, t.TempDir())
	e := newEnv(t, "", queue.Options{Space: mon})
	c := e.v5client("dev1")
	if code := v5pub(t, c, "dev1", "one"); code != 0x97 {
		t.Fatalf("publish below the disk reserve: reason %#x, want 0x97", code)
	}
	st := e.b.Stats()
	if st.RefusedBy[ReasonDisk].Load() != 1 || st.RefusedBy[ReasonQuota].Load() != 0 || st.Refused.Load() != 1 {
		t.Fatalf("refused %d: disk %d quota %d; want 1: 1, 0", st.Refused.Load(), st.RefusedBy[ReasonDisk].Load(), st.RefusedBy[ReasonQuota].Load())
	}
	if d := e.queue(QueueName("$upstream", route.DefaultPriority)).Stats().Depth; d != 0 {
		t.Fatalf("depth %d", d)
	}
}

// A route's maxBytes caps the queue it feeds; its overflow (or the
// global one) decides between refusing and dropping the oldest.
func TestRouteCapsApplyToTheirQueue(t *testing.T) {
	routes := `{"schemaVersion":"1.1","routes":{
		"keep":{"route":"FROM /messages/* WHERE $connectionDeviceId = 'dev1' INTO $upstream","priority":1,"maxBytes":300,"overflow":"drop-oldest"},
		"strict":{"route":"FROM /messages/* WHERE $connectionDeviceId = 'dev2' INTO $upstream","priority":2,"maxBytes":300}},
		"storeAndForwardConfiguration":{"overflow":"reject"}}`
	e := newEnv(t, routes, queue.Options{})
	c1, c2 := e.v5client("dev1"), e.v5client("dev2")
	for _, b := range []string{"a1", "a2", "a3", "a4", "a5"} {
		if code := v5pub(t, c1, "dev1", b); code != 0 {
			t.Fatalf("drop-oldest route refused %s: %#x", b, code)
		}
	}
	keep := e.queue(QueueName("$upstream", 1)).Stats()
	if keep.Dropped == 0 || keep.Bytes > 300 || keep.Depth == 0 {
		t.Fatalf("drop-oldest queue %+v: want some dropped, at most 300 bytes", keep)
	}
	refused := 0
	for _, b := range []string{"b1", "b2", "b3", "b4", "b5"} {
		if code := v5pub(t, c2, "dev2", b); code == 0x97 {
			refused++
		}
	}
	strict := e.queue(QueueName("$upstream", 2)).Stats()
	if refused == 0 || strict.Dropped != 0 || strict.Bytes > 300 || int64(refused) != e.b.Stats().RefusedBy[ReasonQuota].Load() {
		t.Fatalf("reject queue %+v, %d refused (quota %d)", strict, refused, e.b.Stats().RefusedBy[ReasonQuota].Load())
	}
}

// The in-flight cap is the ack queue's, so it holds for every QoS 1
// publish: a PUBACK answered at once (twin, method answer) or a refusal
// also waits behind a client that does not read, and counts.
func TestAckQueueCap(t *testing.T) {
	a := ackQueue{max: 2}
	for pid := uint16(1); pid <= 2; pid++ {
		e, ok := a.push(pid, 1)
		if !ok {
			t.Fatalf("publish %d refused under the cap", pid)
		}
		a.done(e, nil) // answered, its PUBACK not written yet
	}
	if _, ok := a.push(3, 1); ok {
		t.Fatal("a third unacknowledged publish was queued; the cap is 2")
	}
}
