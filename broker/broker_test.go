package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-edge/outpost/broker/route"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/store/twin"
)

const edgeID = "gw1"

// passwords is a test Authenticator: identity id → password.
type passwords map[string]string

func (p passwords) Authenticate(c Credentials) (Login, error) {
	if want, ok := p[c.ClientID]; ok && want == string(c.Password) {
		return Login{ID: c.ClientID}, nil
	}
	return Login{}, errors.New("bad credentials")
}

func (p passwords) Recheck(Login) error { return nil }

type env struct {
	t      testing.TB
	b      *Broker
	qs     *queue.Store
	twins  *twin.Store
	addr   string
	ctx    context.Context
	cancel context.CancelFunc
}

func newEnv(t testing.TB, routes string, qopts queue.Options) *env {
	t.Helper()
	return newEnvWith(t, routes, qopts, nil)
}

// newEnvWith is newEnv with a chance to change the broker's options.
func newEnvWith(t testing.TB, routes string, qopts queue.Options, change func(*Options)) *env {
	t.Helper()
	return newEnvStart(t, routes, qopts, change, nil)
}

// newEnvStart is newEnvWith with a chance to change the broker before it
// starts (its mochi capabilities, which the connections read unlocked).
func newEnvStart(t testing.TB, routes string, qopts queue.Options, change func(*Options), before func(*Broker)) *env {
	t.Helper()
	db, err := kv.Open("", kv.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	qs, err := queue.Open(ctx, db, qopts)
	if err != nil {
		t.Fatal(err)
	}
	twins, err := twin.Open(ctx, db, twin.Options{Role: twin.Edge, Name: edgeID})
	if err != nil {
		t.Fatal(err)
	}
	var cfg *route.Config
	if routes != "" {
		if cfg, err = route.ParseConfig([]byte(routes)); err != nil {
			t.Fatal(err)
		}
	}
	auth := passwords{"dev1": "pw", "dev2": "pw", edgeID + "/a": "pw", edgeID + "/b": "pw"}
	opts := Options{EdgeID: edgeID, Auth: auth, Queues: qs, Twins: twins, Routes: cfg, TCP: "127.0.0.1:0", StandaloneTwins: true}
	if change != nil {
		change(&opts)
	}
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(b)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, b: b, qs: qs, twins: twins, addr: b.Addr("tcp").String(), ctx: ctx, cancel: cancel}
	t.Cleanup(func() {
		b.Close()
		qs.Close()
		cancel()
		db.Close()
	})
	return e
}

// client connects a paho (MQTT 3.1.1) client as id.
func (e *env) client(id, password string) paho.Client {
	e.t.Helper()
	c, err := e.dial(id, password)
	if err != nil {
		e.t.Fatalf("connect %s: %v", id, err)
	}
	e.t.Cleanup(func() { c.Disconnect(10) })
	return c
}

func (e *env) dial(id, password string) (paho.Client, error) {
	o := paho.NewClientOptions().AddBroker("tcp://" + e.addr).SetClientID(id).
		SetUsername("hub.example/" + id + "/?api-version=2021-04-12").SetPassword(password).
		SetAutoReconnect(false).SetCleanSession(false).SetOrderMatters(true).SetProtocolVersion(4)
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	return c, tok.Error()
}

// expectDisconnected waits up to 3 s for the broker to close c's
// connection (how an MQTT 3.1.1 client learns of a refused publish).
func expectDisconnected(t testing.TB, c paho.Client, why string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for c.IsConnected() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if c.IsConnected() {
		t.Error(why)
	}
}

func wait(t testing.TB, tok paho.Token) {
	t.Helper()
	if !tok.WaitTimeout(5 * time.Second) {
		t.Fatal("timed out")
	}
	if err := tok.Error(); err != nil {
		t.Fatal(err)
	}
}

func (e *env) queue(name string) *queue.Queue {
	q, err := e.qs.Queue(name, queue.QueueOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return q
}

func TestTelemetryStoredBeforePuback(t *testing.T) {
	e := newEnv(t, "", queue.Options{})
	c := e.client("dev1", "pw")
	wait(t, c.Publish("devices/dev1/messages/events/temp=21&%24.mid=m-1&%24.ct=application%2Fjson", 1, false, `{"t":21.5}`))
	// PUBACK came back: the message must already be in the upstream queue.
	msgs, err := e.queue(QueueName("$upstream", route.DefaultPriority)).Read(0, 10)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("upstream queue: %v %v", msgs, err)
	}
	m := msgs[0]
	if m.ID != "m-1" || m.Props["temp"] != "21" || m.Sys["contentType"] != "application/json" ||
		m.Sys["connectionDeviceId"] != "dev1" || string(m.Body) != `{"t":21.5}` {
		t.Errorf("stored %+v", m)
	}
	if e.b.Stats().Received.Load() != 1 {
		t.Errorf("received = %d", e.b.Stats().Received.Load())
	}
}

func TestModuleToModuleRoute(t *testing.T) {
	routes := `{"routes":{"ab":"FROM /messages/modules/a/outputs/out1 WHERE as_number(temp) > 20 INTO BrokeredEndpoint(\"/modules/b/inputs/in1\")","up":"FROM /messages/* INTO $upstream"}}`
	e := newEnv(t, routes, queue.Options{})
	a := e.client(edgeID+"/a", "pw")
	b := e.client(edgeID+"/b", "pw")
	got := make(chan paho.Message, 100)
	wait(t, b.Subscribe("devices/"+edgeID+"/modules/b/#", 1, func(_ paho.Client, m paho.Message) { got <- m }))
	for i := 0; i < 50; i++ {
		wait(t, a.Publish(fmt.Sprintf("devices/%s/modules/a/messages/events/%%24.on=out1&temp=%d&seq=%d", edgeID, 15+i%10, i), 1, false, fmt.Sprint(i)))
	}
	var seqs []string
	for len(seqs) < 20 { // temp 21..24 of each ten: 4 of 10 pass the condition... 15+i%10 > 20 → 6..9: 4 per ten
		select {
		case m := <-got:
			if !strings.HasPrefix(m.Topic(), "devices/"+edgeID+"/modules/b/inputs/in1/") {
				t.Fatalf("delivered on %s", m.Topic())
			}
			if !strings.Contains(m.Topic(), "%24.cmid=a") {
				t.Errorf("sender missing in %s", m.Topic())
			}
			seqs = append(seqs, string(m.Payload()))
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d of 20 routed messages", len(seqs))
		}
	}
	for i, s := range seqs { // in order
		want := fmt.Sprint((i/4)*10 + 6 + i%4)
		if s != want {
			t.Fatalf("message %d is %s, want %s (order or filter wrong): %v", i, s, want, seqs)
		}
	}
	// Acknowledged deliveries leave the queue.
	deadline := time.Now().Add(5 * time.Second)
	for e.queue(QueueName("modules/b/inputs/in1", route.DefaultPriority)).Stats().Depth != 0 {
		if time.Now().After(deadline) {
			t.Fatal("delivered messages not acknowledged in the queue")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTwinGetPatchAndDesired(t *testing.T) {
	e := newEnv(t, "", queue.Options{})
	c := e.client("dev1", "pw")
	res := make(chan paho.Message, 10)
	wait(t, c.Subscribe("$iothub/twin/res/#", 0, func(_ paho.Client, m paho.Message) { res <- m }))
	desired := make(chan paho.Message, 10)
	wait(t, c.Subscribe("$iothub/twin/PATCH/properties/desired/#", 0, func(_ paho.Client, m paho.Message) { desired <- m }))

	wait(t, c.Publish("$iothub/twin/PATCH/properties/reported/?$rid=1", 1, false, `{"fw":"1.0","temp":null}`))
	m := recv(t, res)
	if m.Topic() != "$iothub/twin/res/204/?$rid=1&$version=2" {
		t.Errorf("patch answer on %s", m.Topic())
	}
	wait(t, c.Publish("$iothub/twin/PATCH/properties/reported/?$rid=2", 1, false, `{"bad.key":1}`))
	if m := recv(t, res); !strings.HasPrefix(m.Topic(), "$iothub/twin/res/400/?$rid=2") || !strings.Contains(string(m.Payload()), "bad.key") {
		t.Errorf("invalid patch answered %s %s", m.Topic(), m.Payload())
	}
	wait(t, c.Publish("$iothub/twin/GET/?$rid=3", 0, false, ""))
	m = recv(t, res)
	var doc map[string]map[string]any
	if err := json.Unmarshal(m.Payload(), &doc); err != nil || m.Topic() != "$iothub/twin/res/200/?$rid=3" {
		t.Fatalf("GET answer %s %s %v", m.Topic(), m.Payload(), err)
	}
	if doc["reported"]["fw"] != "1.0" || doc["reported"]["$version"] != 2.0 {
		t.Errorf("GET returned %v", doc)
	}
	e.b.NotifyDesired([]twin.Change{{ID: "dev1", Section: 2, Version: 5, Patch: map[string]any{"interval": 10, "old": nil}}})
	m = recv(t, desired)
	if m.Topic() != "$iothub/twin/PATCH/properties/desired/?$version=5" || string(m.Payload()) != `{"$version":5,"interval":10,"old":null}` {
		t.Errorf("desired notification %s %s", m.Topic(), m.Payload())
	}
}

func recv(t testing.TB, ch chan paho.Message) paho.Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("nothing received")
		return nil
	}
}

func TestDirectMethod(t *testing.T) {
	e := newEnv(t, "", queue.Options{})
	if _, err := e.b.InvokeMethod(e.ctx, "dev1", "reboot", nil, time.Second); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("method on an absent device: %v", err)
	}
	c := e.client("dev1", "pw")
	var mu sync.Mutex
	silent := false
	wait(t, c.Subscribe("$iothub/methods/POST/#", 0, func(cl paho.Client, m paho.Message) {
		mu.Lock()
		defer mu.Unlock()
		if silent {
			return
		}
		rid := m.Topic()[strings.Index(m.Topic(), "$rid=")+5:]
		cl.Publish("$iothub/methods/res/201/?$rid="+rid, 0, false, `{"echo":`+string(m.Payload())+`}`)
	}))
	r, err := e.b.InvokeMethod(e.ctx, "dev1", "echo", []byte(`"hi"`), 5*time.Second)
	if err != nil || r.Status != 201 || string(r.Payload) != `{"echo":"hi"}` {
		t.Fatalf("method: %+v %v", r, err)
	}
	mu.Lock()
	silent = true
	mu.Unlock()
	if _, err := e.b.InvokeMethod(e.ctx, "dev1", "echo", nil, 200*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("unanswered method: %v", err)
	}
}

func TestC2DKeptUntilConnected(t *testing.T) {
	e := newEnv(t, "", queue.Options{})
	for i := 0; i < 3; i++ {
		if err := e.b.SendC2D(e.ctx, "dev1", queue.Message{Props: map[string]string{"n": fmt.Sprint(i)}, Body: []byte("cmd")}); err != nil {
			t.Fatal(err)
		}
	}
	c := e.client("dev1", "pw")
	got := make(chan paho.Message, 10)
	wait(t, c.Subscribe("devices/dev1/messages/devicebound/#", 1, func(_ paho.Client, m paho.Message) { got <- m }))
	for i := 0; i < 3; i++ {
		m := recv(t, got)
		if !strings.Contains(m.Topic(), fmt.Sprintf("n=%d", i)) {
			t.Errorf("C2D %d on %s", i, m.Topic())
		}
	}
}

func TestRefusals(t *testing.T) {
	e := newEnv(t, "", queue.Options{})
	if _, err := e.dial("dev1", "wrong"); err == nil {
		t.Error("wrong password accepted")
	}
	if _, err := e.dial("nobody", "pw"); err == nil {
		t.Error("unknown identity accepted")
	}
	// Subscribing outside the identity is refused (SUBACK failure).
	c := e.client("dev2", "pw")
	tok := c.Subscribe("devices/dev1/messages/devicebound/#", 1, nil)
	wait(t, tok)
	if codes := tok.(*paho.SubscribeToken).Result(); codes["devices/dev1/messages/devicebound/#"] < 0x80 {
		t.Errorf("foreign subscription granted: %v", codes)
	}
	// Publishing outside the identity: an MQTT 3.1.1 client is disconnected, nothing stored.
	c.Publish("devices/dev1/messages/events/", 1, false, "spoof").WaitTimeout(time.Second)
	expectDisconnected(t, c, "client publishing as another device stays connected")
	if d := e.queue(QueueName("$upstream", route.DefaultPriority)).Stats().Depth; d != 0 {
		t.Errorf("spoofed message stored (%d)", d)
	}
	if e.b.Stats().Denied.Load() == 0 || e.b.Stats().AuthFailed.Load() != 2 {
		t.Errorf("denied %d, auth failed %d", e.b.Stats().Denied.Load(), e.b.Stats().AuthFailed.Load())
	}
}

func TestOversizeAndFullQueueRefused(t *testing.T) {
	e := newEnv(t, "", queue.Options{TotalMaxCount: 2})
	c := e.client("dev1", "pw")
	wait(t, c.Publish("devices/dev1/messages/events/", 1, false, "one"))
	wait(t, c.Publish("devices/dev1/messages/events/", 1, false, "two"))
	tok := c.Publish("devices/dev1/messages/events/", 1, false, "three")
	tok.WaitTimeout(2 * time.Second)
	expectDisconnected(t, c, "MQTT 3.1.1 client not disconnected when the queue is full")
	if d := e.queue(QueueName("$upstream", route.DefaultPriority)).Stats().Depth; d != 2 {
		t.Errorf("depth %d after a refused message, want 2", d)
	}
	c2 := e.client("dev2", "pw")
	big := strings.Repeat("x", 300<<10)
	c2.Publish("devices/dev2/messages/events/", 1, false, big).WaitTimeout(2 * time.Second)
	if e.b.Stats().Refused.Load() < 2 {
		t.Errorf("refused = %d, want the full queue and the oversize payload counted", e.b.Stats().Refused.Load())
	}
}

// Module inputs that were delivered but not PUBACKed come again on the next
// connection; PUBACKed ones never do.
func TestInputsRedeliveredUntilAcked(t *testing.T) {
	routes := `{"routes":{"ab":"FROM /messages/modules/a/* INTO BrokeredEndpoint(\"/modules/b/inputs/in1\")"}}`
	e := newEnv(t, routes, queue.Options{})
	a := e.client(edgeID+"/a", "pw")
	for i := 0; i < 5; i++ {
		wait(t, a.Publish(fmt.Sprintf("devices/%s/modules/a/messages/events/n=%d", edgeID, i), 1, false, fmt.Sprint(i)))
	}
	// First connection: take the messages, acknowledge only the first two.
	o := paho.NewClientOptions().AddBroker("tcp://" + e.addr).SetClientID(edgeID + "/b").
		SetUsername("h/" + edgeID + "/b/?api-version=1").SetPassword("pw").SetAutoReconnect(false).
		SetCleanSession(true).SetProtocolVersion(4).SetAutoAckDisabled(true).SetOrderMatters(true)
	b1 := paho.NewClient(o)
	wait(t, b1.Connect())
	got := make(chan paho.Message, 10)
	wait(t, b1.Subscribe("devices/"+edgeID+"/modules/b/#", 1, func(_ paho.Client, m paho.Message) { got <- m }))
	for i := 0; i < 5; i++ {
		m := recv(t, got)
		if i < 2 {
			m.Ack()
		}
	}
	time.Sleep(100 * time.Millisecond)
	b1.Disconnect(10)
	// Second connection: 2, 3, 4 again, in order.
	b2 := e.client(edgeID+"/b", "pw")
	got2 := make(chan paho.Message, 10)
	wait(t, b2.Subscribe("devices/"+edgeID+"/modules/b/#", 1, func(_ paho.Client, m paho.Message) { got2 <- m }))
	for i := 2; i < 5; i++ {
		if m := recv(t, got2); string(m.Payload()) != fmt.Sprint(i) {
			t.Fatalf("redelivered %s, want %d", m.Payload(), i)
		}
	}
	select {
	case m := <-got2:
		t.Fatalf("extra delivery %s", m.Payload())
	case <-time.After(200 * time.Millisecond):
	}
}

// One connection per identity: a second CONNECT with the same identity
// replaces the first.
func TestOneConnectionPerIdentity(t *testing.T) {
	e := newEnv(t, "", queue.Options{})
	first := e.client("dev1", "pw")
	second := e.client("dev1", "pw")
	deadline := time.Now().Add(3 * time.Second)
	for first.IsConnected() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if first.IsConnected() || !second.IsConnected() {
		t.Fatalf("first connected %v, second %v", first.IsConnected(), second.IsConnected())
	}
	wait(t, second.Publish("devices/dev1/messages/events/", 1, false, "x"))
}

// Free topics between local clients follow the $edgeHub authorization
// policy; without a policy they are refused.
func TestFreeTopicsFollowPolicy(t *testing.T) {
	e := newEnv(t, "", queue.Options{})
	a := e.client(edgeID+"/a", "pw")
	tok := a.Subscribe("shared/x", 1, nil)
	wait(t, tok)
	if tok.(*paho.SubscribeToken).Result()["shared/x"] < 0x80 {
		t.Fatal("free topic granted without a policy")
	}
	p, err := ParsePolicy([]byte(`{"mqttBroker":{"authorizations":[{"identities":["{{iot:identity}}"],"allow":[{"operations":["mqtt:publish","mqtt:subscribe"],"resources":["shared/#"]}]}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	e.b.SetPolicy(p)
	got := make(chan paho.Message, 1)
	wait(t, a.Subscribe("shared/#", 1, func(_ paho.Client, m paho.Message) { got <- m }))
	b := e.client(edgeID+"/b", "pw")
	wait(t, b.Publish("shared/hello", 1, false, "hi"))
	if m := recv(t, got); m.Topic() != "shared/hello" || string(m.Payload()) != "hi" {
		t.Errorf("got %s %s", m.Topic(), m.Payload())
	}
	// The policy never opens another identity's IoT Hub topics.
	tok = b.Subscribe("devices/dev1/messages/devicebound/#", 1, nil)
	wait(t, tok)
	if tok.(*paho.SubscribeToken).Result()["devices/dev1/messages/devicebound/#"] < 0x80 {
		t.Error("another device's C2D granted")
	}
}

// A sender's own expiry ($.exp) shortens the route's time to live.
func TestSenderExpiryShortensTTL(t *testing.T) {
	e := newEnv(t, `{"routes":{"up":{"route":"FROM /messages/* INTO $upstream","priority":0,"timeToLiveSecs":86400}}}`, queue.Options{})
	c := e.client("dev1", "pw")
	exp := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	wait(t, c.Publish("devices/dev1/messages/events/%24.exp="+url.QueryEscape(exp), 1, false, "soon"))
	wait(t, c.Publish("devices/dev1/messages/events/", 1, false, "later"))
	msgs, _ := e.queue(QueueName("$upstream", 0)).Read(0, 10)
	if len(msgs) != 2 || msgs[0].TTL > time.Hour || msgs[0].TTL < 59*time.Minute || msgs[1].TTL != 24*time.Hour {
		t.Fatalf("TTLs %v / %v", msgs[0].TTL, msgs[1].TTL)
	}
}

// With a hub, a twin the edge never received is not served as an empty
// twin: the GET is answered 503.
func TestUnsyncedTwinNotFaked(t *testing.T) {
	e := newEnvWith(t, "", queue.Options{}, func(o *Options) { o.StandaloneTwins = false })
	c := e.client("dev1", "pw")
	res := make(chan paho.Message, 1)
	wait(t, c.Subscribe("$iothub/twin/res/#", 0, func(_ paho.Client, m paho.Message) { res <- m }))
	wait(t, c.Publish("$iothub/twin/GET/?$rid=9", 0, false, ""))
	if m := recv(t, res); !strings.HasPrefix(m.Topic(), "$iothub/twin/res/503/?$rid=9") {
		t.Fatalf("GET of an unsynchronised twin answered on %s: %s", m.Topic(), m.Payload())
	}
}

// Messages carry the sender's generationId, which a sender cannot set.
func TestGenerationStamped(t *testing.T) {
	e := newEnvWith(t, "", queue.Options{}, func(o *Options) {
		o.Generation = func(id string) string { return "g-" + id }
	})
	c := e.client("dev1", "pw")
	wait(t, c.Publish("devices/dev1/messages/events/connectionDeviceGenerationId=forged", 1, false, `{}`))
	msgs, err := e.queue(QueueName("$upstream", route.DefaultPriority)).Read(0, 10)
	if err != nil || len(msgs) != 1 || msgs[0].Sys[sysGeneration] != "g-dev1" {
		t.Fatalf("upstream queue: %+v %v", msgs, err)
	}
}

// PurgeQueues empties a deleted device's cloud-to-device queue.
func TestPurgeQueues(t *testing.T) {
	e := newEnv(t, "", queue.Options{})
	if err := e.b.SendC2D(e.ctx, "dev1", queue.Message{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if err := e.b.SendC2D(e.ctx, "dev2", queue.Message{Body: []byte("y")}); err != nil {
		t.Fatal(err)
	}
	if n, err := e.b.PurgeQueues(e.ctx, "dev1"); n != 1 || err != nil {
		t.Fatalf("purged %d, %v; want 1", n, err)
	}
	for dev, want := range map[string]int64{"dev1": 0, "dev2": 1} {
		if d := e.queue(QueueName("c2d/"+dev, 0)).Stats().Depth; d != want {
			t.Errorf("%s: depth %d, want %d", dev, d, want)
		}
	}
}
