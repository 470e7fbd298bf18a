package broker

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/mqttstate"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/store/twin"
)

// The test clients log in without credentials from loopback: generic
// clients of the account "anonymous".
const testAccounts = `{"mqttBroker":{"anonymous":"loopback"}}`

const testPolicy = `{"mqttBroker":{"authorizations":[{"identities":["{{iot:identity}}"],
 "allow":[{"operations":["mqtt:publish","mqtt:subscribe"],"resources":["test/#"]}]}]}}`

// edge is a broker with its store on a directory, as `outpost edge` runs
// it: closed and opened again on the same directory for a restart.
type edge struct {
	t      testing.TB
	dir    string
	db     *kv.DB
	qs     *queue.Store
	b      *Broker
	addr   string
	cancel context.CancelFunc
}

func openEdge(t testing.TB, dir string) *edge {
	t.Helper()
	db, err := kv.Open(dir, kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &edge{t: t, dir: dir, db: db, cancel: cancel}
	if e.qs, err = queue.Open(ctx, db, queue.Options{}); err != nil {
		t.Fatal(err)
	}
	twins, err := twin.Open(ctx, db, twin.Options{Role: twin.Edge, Name: edgeID})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := ParsePolicy([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	accts, err := ParseAccounts([]byte(testAccounts))
	if err != nil {
		t.Fatal(err)
	}
	e.b, err = New(Options{EdgeID: edgeID, Auth: passwords{}, Accounts: accts, Queues: e.qs, Twins: twins, DB: db, Policy: pol,
		TCP: "127.0.0.1:0", StandaloneTwins: true, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.b.Start(); err != nil {
		t.Fatal(err)
	}
	e.addr = e.b.Addr("tcp").String()
	t.Cleanup(e.close)
	return e
}

// close stops the edge gracefully; it may be called more than once.
func (e *edge) close() {
	if e.db == nil {
		return
	}
	e.b.Close()
	e.qs.Close()
	e.cancel()
	e.db.Close()
	e.db = nil
}

// restart closes the edge and opens it again on the same directory.
func (e *edge) restart() *edge {
	e.close()
	return openEdge(e.t, e.dir)
}

// state reads what is stored, once every write enqueued so far is done.
func (e *edge) state() *mqttstate.State {
	e.t.Helper()
	done := make(chan error, 1)
	e.db.CommitAsync(nil, func(err error) { done <- err })
	if err := <-done; err != nil {
		e.t.Fatal(err)
	}
	st, err := mqttstate.Load(e.db)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// inbox collects what a client receives.
type inbox struct {
	mu  sync.Mutex
	got []string // topic=payload, retained ones prefixed "R "
	ch  chan struct{}
}

func newInbox() *inbox { return &inbox{ch: make(chan struct{}, 1)} }

func (in *inbox) add(topic string, payload []byte, retained bool) {
	s := topic + "=" + string(payload)
	if retained {
		s = "R " + s
	}
	in.mu.Lock()
	in.got = append(in.got, s)
	in.mu.Unlock()
	select {
	case in.ch <- struct{}{}:
	default:
	}
}

// until waits up to 5 s for a message equal to last and returns all
// received by then.
func (in *inbox) until(t testing.TB, last string) []string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		in.mu.Lock()
		for i, s := range in.got {
			if s == last {
				out := append([]string(nil), in.got[:i+1]...)
				in.mu.Unlock()
				return out
			}
		}
		in.mu.Unlock()
		select {
		case <-in.ch:
		case <-deadline:
			in.mu.Lock()
			defer in.mu.Unlock()
			t.Fatalf("%q not received; got %q", last, in.got)
			return nil
		}
	}
}

// all waits up to 5 s until every message of want has been received,
// in any order, and returns all received by then.
func (in *inbox) all(t testing.TB, want ...string) []string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		in.mu.Lock()
		got := append([]string(nil), in.got...)
		in.mu.Unlock()
		if containsAll(got, want) {
			return got
		}
		select {
		case <-in.ch:
		case <-deadline:
			t.Fatalf("%q not all received; got %q", want, got)
			return nil
		}
	}
}

func containsAll(got, want []string) bool {
	have := map[string]bool{}
	for _, s := range got {
		have[s] = true
	}
	for _, s := range want {
		if !have[s] {
			return false
		}
	}
	return true
}

// v3 connects an MQTT 3.1.1 client (paho.mqtt.golang).
func v3(t testing.TB, addr, id string, clean bool, in *inbox) mqtt3.Client {
	t.Helper()
	o := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetAutoReconnect(false).SetCleanSession(clean).SetOrderMatters(true).SetProtocolVersion(4)
	if in != nil {
		o.SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) { in.add(m.Topic(), m.Payload(), m.Retained()) })
	}
	c := mqtt3.NewClient(o)
	waitTok(t, c.Connect())
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

func waitTok(t testing.TB, tok mqtt3.Token) {
	t.Helper()
	if !tok.WaitTimeout(5 * time.Second) {
		t.Fatal("timed out")
	}
	if err := tok.Error(); err != nil {
		t.Fatal(err)
	}
}

func publish3(t testing.TB, c mqtt3.Client, topic, payload string, retain bool) {
	t.Helper()
	waitTok(t, c.Publish(topic, 1, retain, payload))
}

// v5 connects an MQTT 5 client (paho.golang) with a session expiry
// (seconds, 0: the session ends with the connection) and a will.
func v5(t testing.TB, addr, id string, expiry uint32, will *paho.WillMessage, in *inbox) (*paho.Client, net.Conn) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg := paho.ClientConfig{Conn: conn}
	if in != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(r paho.PublishReceived) (bool, error) {
			in.add(r.Packet.Topic, r.Packet.Payload, r.Packet.Retain)
			return true, nil
		}}
	}
	c := paho.NewClient(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: expiry == 0,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}, WillMessage: will})
	if err != nil || ca.ReasonCode != 0 {
		t.Fatalf("connect %s: %v %+v", id, err, ca)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, conn
}

func psub5(t testing.TB, c *paho.Client, filter string) { psub5q(t, c, filter, 1) }

func psub5q(t testing.TB, c *paho.Client, filter string, qos byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if err != nil {
		t.Fatal(err)
	}
	if sa.Reasons[0] != qos {
		t.Fatalf("subscribe %s at QoS %d: granted %#x", filter, qos, sa.Reasons[0])
	}
}

// A retained message is still retained after a restart; an empty retained
// publish clears it, and it stays cleared after another restart.
func TestPersistRetainedAcrossRestart(t *testing.T) {
	e := openEdge(t, t.TempDir())
	pub := v3(t, e.addr, "pub", true, nil)
	publish3(t, pub, "test/r", "21.5", true)
	e = e.restart()

	in := newInbox()
	sub := v3(t, e.addr, "sub", true, in)
	waitTok(t, sub.Subscribe("test/#", 1, nil))
	if got := in.until(t, "R test/r=21.5"); len(got) != 1 {
		t.Fatalf("after a restart a subscriber got %q, want the retained message once", got)
	}
	sub.Disconnect(0)
	pub = v3(t, e.addr, "pub", true, nil)
	publish3(t, pub, "test/r", "", true)
	e = e.restart()

	in = newInbox()
	sub = v3(t, e.addr, "sub", true, in)
	waitTok(t, sub.Subscribe("test/#", 1, nil))
	pub = v3(t, e.addr, "pub", true, nil)
	publish3(t, pub, "test/sentinel", "x", false)
	if got := in.until(t, "test/sentinel=x"); len(got) != 1 {
		t.Fatalf("after clearing and a restart a subscriber got %q, want no retained message", got)
	}
	if st := e.state(); len(st.Retained) != 0 {
		t.Fatalf("retained records left: %+v", st.Retained)
	}
}

// queuedForOfflineSessions: sub3 (MQTT 3.1.1, clean session false) and
// sub5 (MQTT 5, session expiry 1 h) subscribe to test/q and leave, three
// QoS 1 messages are published for them, and the edge restarts.
func queuedForOfflineSessions(t *testing.T) *edge {
	t.Helper()
	e := openEdge(t, t.TempDir())
	s3 := v3(t, e.addr, "sub3", false, nil)
	waitTok(t, s3.Subscribe("test/q", 1, nil))
	s3.Disconnect(0)
	s5, _ := v5(t, e.addr, "sub5", 3600, nil, nil)
	psub5(t, s5, "test/q")
	_ = s5.Disconnect(&paho.Disconnect{})
	pub := v3(t, e.addr, "pub", true, nil)
	for i := 1; i <= 3; i++ {
		publish3(t, pub, "test/q", fmt.Sprint(i), false)
	}
	e = e.restart()
	return e
}

// Offline persistent sessions, MQTT 3.1.1 clean session false and MQTT 5
// with a session expiry, get the QoS 1 messages published while they were
// away after a restart, once each; their accounts are known again before
// they reconnect; once acknowledged, the messages do not come back after
// another restart.
func TestPersistSessionsAcrossRestart(t *testing.T) {
	e := queuedForOfflineSessions(t)
	for _, id := range []string{"sub3", "sub5"} {
		if a, generic := e.b.principal(id); a != AnonymousAccount || !generic {
			t.Errorf("after a restart principal(%s) = %q, %v; want the account anonymous", id, a, generic)
		}
	}
	in3, in5 := newInbox(), newInbox()
	v3(t, e.addr, "sub3", false, in3)
	v5(t, e.addr, "sub5", 3600, nil, in5)
	pub := v3(t, e.addr, "pub", true, nil)
	publish3(t, pub, "test/q", "4", false)
	// Neither order nor a QoS 1 duplicate is checked: see
	// TestPersistResendOvertaken.
	want := []string{"test/q=1", "test/q=2", "test/q=3", "test/q=4"}
	for name, in := range map[string]*inbox{"3.1.1": in3, "5": in5} {
		if got := in.all(t, want...); fmt.Sprint(distinct(got)) != fmt.Sprint(want) {
			t.Errorf("MQTT %s subscriber got %q after the restart, want %q", name, got, want)
		}
	}
	waitFor(t, "acknowledged messages deleted", func() bool { return len(e.state().Inflight) == 0 })
	e = e.restart()
	in3, in5 = newInbox(), newInbox()
	v3(t, e.addr, "sub3", false, in3)
	v5(t, e.addr, "sub5", 3600, nil, in5)
	pub = v3(t, e.addr, "pub", true, nil)
	publish3(t, pub, "test/q", "5", false)
	for name, in := range map[string]*inbox{"3.1.1": in3, "5": in5} {
		if got := in.until(t, "test/q=5"); len(got) != 1 {
			t.Errorf("MQTT %s subscriber got %q after a second restart, want only the new message", name, got)
		}
	}
}

// Clean sessions leave no records: not while connected, not after; a
// client with a will has a record while connected, none after its
// DISCONNECT.
func TestPersistCleanSessionLeavesNoRecords(t *testing.T) {
	e := openEdge(t, t.TempDir())
	in3, in5 := newInbox(), newInbox()
	c3 := v3(t, e.addr, "clean3", true, in3)
	waitTok(t, c3.Subscribe("test/c", 1, nil))
	c5, _ := v5(t, e.addr, "clean5", 0, &paho.WillMessage{Topic: "test/will", Payload: []byte("gone"), QoS: 1}, in5)
	psub5(t, c5, "test/c")
	pub := v3(t, e.addr, "pub", true, nil)
	publish3(t, pub, "test/c", "m", false)
	in3.until(t, "test/c=m")
	in5.until(t, "test/c=m")
	st := e.state()
	if len(st.Subscriptions) != 0 || len(st.Inflight) != 0 || len(st.Clients) != 1 || st.Clients[0].ID != "clean5" {
		t.Fatalf("clean sessions stored %+v; want only the record of clean5 (it has a will)", st)
	}
	c3.Disconnect(0)
	_ = c5.Disconnect(&paho.Disconnect{})
	waitFor(t, "no records", func() bool {
		st := e.state()
		return len(st.Clients)+len(st.Subscriptions)+len(st.Inflight) == 0
	})
}

// A client whose connection ends without DISCONNECT has its will
// published, once: not again after a restart.
func TestPersistWillOnUngracefulDisconnect(t *testing.T) {
	e := openEdge(t, t.TempDir())
	in := newInbox()
	watch := v3(t, e.addr, "watch", false, in)
	waitTok(t, watch.Subscribe("test/will", 1, nil))
	_, conn := v5(t, e.addr, "w", 3600, &paho.WillMessage{Topic: "test/will", Payload: []byte("gone"), QoS: 1}, nil)
	conn.Close()
	in.until(t, "test/will=gone")
	waitFor(t, "the will acknowledged", func() bool { return len(e.state().Inflight) == 0 })
	watch.Disconnect(0)
	e = e.restart()
	in = newInbox()
	v3(t, e.addr, "watch", false, in)
	pub := v3(t, e.addr, "pub", true, nil)
	publish3(t, pub, "test/will", "sentinel", false)
	if got := in.until(t, "test/will=sentinel"); len(got) != 1 {
		t.Fatalf("after a restart the watcher got %q, want no second will", got)
	}
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

// distinct returns the distinct strings of s, sorted.
func distinct(s []string) []string {
	var out []string
	for i, v := range sorted(s) {
		if i == 0 || v != out[len(out)-1] {
			out = append(out, v)
		}
	}
	return out
}

const killChildEnv = "OUTPOST_PERSIST_KILL_DIR"

// TestPersistKillChild is the edge TestPersistAcrossKill kills: it prints
// "ADDR <address>" and serves until killed.
func TestPersistKillChild(t *testing.T) {
	dir := os.Getenv(killChildEnv)
	if dir == "" {
		t.Skip("helper process for TestPersistAcrossKill")
	}
	e := openEdge(t, dir)
	fmt.Printf("ADDR %s\n", e.addr)
	select {} // until killed
}

// The edge dies (kill -9) right after a PUBACK, with clients connected:
// once it is back, the wills of the clients connected then are published,
// once; an offline persistent subscriber gets the QoS 1 messages
// acknowledged before the kill (persist.go's ordering contract, which
// freetopic.go's barrier relies on) and the wills; its account is known
// again before it reconnects.
func TestPersistAcrossKill(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPersistKillChild$")
	cmd.Env = append(os.Environ(), killChildEnv+"="+dir)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	next := func(prefix string) string {
		t.Helper()
		for lines.Scan() {
			if s, ok := strings.CutPrefix(lines.Text(), prefix); ok {
				return s
			}
		}
		t.Fatalf("edge process ended before %q", prefix)
		return ""
	}
	addr := strings.TrimSpace(next("ADDR "))
	sub := v3(t, addr, "sub", false, nil)
	waitTok(t, sub.SubscribeMultiple(map[string]byte{"test/q": 1, "test/will": 1}, nil))
	sub.Disconnect(0)
	w, _ := v5(t, addr, "w", 0, &paho.WillMessage{Topic: "test/will", Payload: []byte("gone"), QoS: 1}, nil)
	psub5(t, w, "test/other") // its SUBACK: the session is established
	wp, _ := v5(t, addr, "wp", 3600, &paho.WillMessage{Topic: "test/will", Payload: []byte("gone-p"), QoS: 1}, nil)
	psub5(t, wp, "test/other")
	// A will the policy does not allow (mochi accepts any at CONNECT).
	wd, _ := v5(t, addr, "wd", 0, &paho.WillMessage{Topic: "other/will", Payload: []byte("no"), QoS: 1}, nil)
	psub5(t, wd, "test/other")
	pub := v3(t, addr, "pub", true, nil)
	publish3(t, pub, "test/q", "1", false)
	publish3(t, pub, "test/q", "2", false)
	// Killed right after the last PUBACK: a free-topic PUBACK comes once
	// the fan-out's records, and every record written before them, are
	// durable (freetopic.go's barrier on the same database).
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	e := openEdge(t, dir)
	if n := e.b.Stats().Denied.Load(); n != 1 {
		t.Errorf("wills denied after the restart: %d, want 1 (other/will)", n)
	}
	if a, generic := e.b.principal("sub"); a != AnonymousAccount || !generic {
		t.Errorf("after kill -9 principal(sub) = %q, %v; want the account anonymous", a, generic)
	}
	in := newInbox()
	v3(t, e.addr, "sub", false, in)
	pub = v3(t, e.addr, "pub", true, nil)
	publish3(t, pub, "test/q", "sentinel", false)
	got := sorted(in.until(t, "test/q=sentinel"))
	if want := "[test/q=1 test/q=2 test/q=sentinel test/will=gone test/will=gone-p]"; fmt.Sprint(got) != want {
		t.Fatalf("after kill -9 the persistent subscriber got %q, want %s", got, want)
	}
	if n := e.b.Stats().WillsAfterRestart.Load(); n != 2 {
		t.Errorf("wills published after the restart: %d, want 2", n)
	}
	for _, c := range e.state().Clients {
		if c.ID == "w" || c.Will != nil {
			t.Errorf("record left after the will was published: %+v", c)
		}
	}
	e = e.restart()
	if n := e.b.Stats().WillsAfterRestart.Load(); n != 0 {
		t.Errorf("wills published again after a second restart: %d", n)
	}
}

// A retained MQTT 5 message keeps its message expiry across a restart:
// it is gone once the expiry passes, as it would have been without one.
func TestPersistRetainedExpiryAcrossRestart(t *testing.T) {
	e := openEdge(t, t.TempDir())
	c, _ := v5(t, e.addr, "pub5", 0, nil, nil)
	expiry := uint32(3) // whole seconds from a whole-second Created: at least 2 s
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Publish(ctx, &paho.Publish{Topic: "test/e", QoS: 1, Retain: true, Payload: []byte("soon"),
		Properties: &paho.PublishProperties{MessageExpiry: &expiry}}); err != nil {
		t.Fatal(err)
	}
	e = e.restart()
	if _, ok := e.b.srv.Topics.Retained.Get("test/e"); !ok {
		t.Fatal("retained message lost at the restart")
	}
	// mochi sweeps expired messages once a second.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, ok := e.b.srv.Topics.Retained.Get("test/e"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the retained message did not expire after the restart")
		}
	}
	waitFor(t, "its record deleted", func() bool { return len(e.state().Retained) == 0 })
}

// An MQTT 5 session ended by its DISCONNECT (session expiry set to 0)
// leaves no records, even those written just before.
func TestPersistSessionEndedByDisconnect(t *testing.T) {
	e := openEdge(t, t.TempDir())
	for i := 0; i < 20; i++ {
		c, _ := v5(t, e.addr, "end5", 3600, nil, nil)
		psub5(t, c, fmt.Sprintf("test/%d", i))
		zero := uint32(0)
		_ = c.Disconnect(&paho.Disconnect{Properties: &paho.DisconnectProperties{SessionExpiryInterval: &zero}})
		waitFor(t, "the session gone", func() bool {
			_, ok := e.b.srv.Clients.Get("end5")
			return !ok
		})
		if st := e.state(); len(st.Clients)+len(st.Subscriptions) != 0 {
			t.Fatalf("round %d: records left after the session ended: %+v", i, st)
		}
	}
}

// QoS 2 messages queued for an offline MQTT 5 session arrive after a
// restart, once each.
func TestPersistQoS2AcrossRestart(t *testing.T) {
	e := openEdge(t, t.TempDir())
	s, _ := v5(t, e.addr, "sub2", 3600, nil, nil)
	psub5q(t, s, "test/two", 2)
	_ = s.Disconnect(&paho.Disconnect{})
	p, _ := v5(t, e.addr, "pub2", 0, nil, nil)
	publish2(t, p, "a")
	publish2(t, p, "b")
	e = e.restart()
	in := newInbox()
	v5(t, e.addr, "sub2", 3600, nil, in)
	p, _ = v5(t, e.addr, "pub2", 0, nil, nil)
	publish2(t, p, "sentinel")
	if got := sorted(in.until(t, "test/two=sentinel")); fmt.Sprint(got) != "[test/two=a test/two=b test/two=sentinel]" {
		t.Errorf("QoS 2 subscriber got %q after the restart", got)
	}
}

func publish2(t testing.TB, c *paho.Client, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Publish(ctx, &paho.Publish{Topic: "test/two", QoS: 2, Payload: []byte(body)}); err != nil {
		t.Fatal(err)
	}
}
