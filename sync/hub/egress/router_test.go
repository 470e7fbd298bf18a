package egress

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// delivered is what a consumer makes of what an endpoint holds: every
// event once (the first copy of each seq), per device in the order the
// endpoint holds them.
type delivered struct {
	seen     map[uint64]bool
	copies   int
	byDevice map[string][]uint64
}

func newDelivered() *delivered {
	return &delivered{seen: map[uint64]bool{}, byDevice: map[string][]uint64{}}
}

// add takes one delivered event's JSON, checking its seq against the
// header that carries it.
func (d *delivered) add(t *testing.T, data []byte, headerSeq string) {
	t.Helper()
	var e struct {
		Seq      uint64 `json:"seq"`
		DeviceID string `json:"deviceId"`
	}
	if err := json.Unmarshal(data, &e); err != nil || e.Seq == 0 || e.DeviceID == "" {
		t.Fatalf("delivered %q: %v", data, err)
	}
	if headerSeq != strconv.FormatUint(e.Seq, 10) {
		t.Fatalf("event %d delivered with seq header %q", e.Seq, headerSeq)
	}
	d.copies++
	if d.seen[e.Seq] {
		return
	}
	d.seen[e.Seq] = true
	d.byDevice[e.DeviceID] = append(d.byDevice[e.DeviceID], e.Seq)
}

// check: every seq 1..last once, in order per device.
func (d *delivered) check(t *testing.T, what string, last uint64) {
	t.Helper()
	for s := uint64(1); s <= last; s++ {
		if !d.seen[s] {
			t.Fatalf("%s: event %d never delivered (%d of %d)", what, s, len(d.seen), last)
		}
	}
	if uint64(len(d.seen)) != last {
		t.Fatalf("%s: %d distinct events, want %d", what, len(d.seen), last)
	}
	for dev, seqs := range d.byDevice {
		if !slices.IsSorted(seqs) {
			t.Fatalf("%s: device %s's events out of hub order: %v", what, dev, seqs)
		}
	}
	t.Logf("%s: %d events, %d copies delivered", what, last, d.copies)
}

func streamContents(t *testing.T, st jetstream.Stream) *delivered {
	t.Helper()
	ctx := context.Background()
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := newDelivered()
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if want := "inc1-" + m.Header.Get("Outpost-Seq"); m.Header.Get(jetstream.MsgIDHeader) != want {
			t.Fatalf("stream message %d: Nats-Msg-Id %q, want %q", seq, m.Header.Get(jetstream.MsgIDHeader), want)
		}
		d.add(t, m.Data, m.Header.Get("Outpost-Seq"))
	}
	return d
}

func topicContents(t *testing.T, brokers []string, topic string, last uint64) *delivered {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	d := newDelivered()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for uint64(len(d.seen)) < last && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			var seq string
			for _, h := range r.Headers {
				if h.Key == "outpost-seq" {
					seq = string(h.Value)
				}
			}
			var e struct{ DeviceID string }
			if json.Unmarshal(r.Value, &e) != nil || e.DeviceID != string(r.Key) {
				t.Fatalf("record key %q, value %s: the key is the device", r.Key, r.Value)
			}
			d.add(t, r.Value, seq)
		})
	}
	return d
}

// TestDeliveryAcrossRestartAndOutage: every event reaches the JetStream
// stream and the Kafka topic at least once and, de-duplicated by seq,
// exactly once and in order per device — across a hub restart in the
// middle of delivery (the same data directory) and an outage of both
// (nats-server stopped, the Kafka cluster closed) while events keep
// arriving.
func TestDeliveryAcrossRestartAndOutage(t *testing.T) {
	ns := startNATS(t)
	st := ns.stream("outpost.events")
	kdir := t.TempDir()
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(kdir), kfake.SeedTopics(3, "outpost-events"))
	if err != nil {
		t.Fatal(err)
	}
	brokers := kc.ListenAddrs()
	_, kport, _ := net.SplitHostPort(brokers[0])
	defer func() { kc.Close() }()
	routes := fmt.Sprintf(`
[[endpoint]]
name = "js"
type = "nats"
url = %q
subject = "outpost.events"
[[endpoint]]
name = "k"
type = "kafka"
brokers = [%q]
topic = "outpost-events"
[[route]]
name = "all-to-js"
query = "FROM /messages/* INTO js"
[[route]]
name = "all-to-k"
query = "FROM /messages/* INTO k"
`, ns.URL, brokers[0])
	th := openTestHub(t, "dev1", "dev2", "dev3")
	temp := func(i int) int { return i % 50 }
	r, stop := runRouter(t, th, routes, DialOptions{HubID: "inc1"})
	th.appendEvents(2000, temp)
	waitFor(t, 30*time.Second, "delivery under way", func() bool { return r.cursorOf("js") > 100 && r.cursorOf("k") > 100 })
	stop() // the hub stops in the middle of delivery
	th.close()
	th.open()
	committed, err := th.h.RouteCursors()
	if err != nil || committed["js"] == 0 || committed["js"] > th.h.LastSeq() {
		t.Fatalf("after restart: cursors %v (%v), last seq %d", committed, err, th.h.LastSeq())
	}
	r, _ = runRouter(t, th, routes, DialOptions{HubID: "inc1"})
	th.appendEvents(300, temp)
	// Both endpoints go down while events keep arriving.
	ns.stop()
	kc.Close()
	th.appendEvents(300, temp)
	// Long enough for Kafka's client to give up on a batch (its delivery
	// timeout) rather than retry it within the outage.
	failed := regexp.MustCompile(`outpost_hub_route_errors_total\{endpoint="(js|k)"\} [1-9]`)
	waitFor(t, 60*time.Second, "failed deliveries counted", func() bool {
		m := th.metrics()
		return len(failed.FindAllString(m, -1)) == 2 && strings.Contains(m, `outpost_hub_route_up{endpoint="js"} 0`) &&
			strings.Contains(m, `outpost_hub_route_up{endpoint="k"} 0`)
	})
	th.appendEvents(300, temp)
	ns.start()
	port, _ := strconv.Atoi(kport)
	if kc, err = kfake.NewCluster(kfake.Ports(port), kfake.DataDir(kdir), kfake.SeedTopics(3, "outpost-events")); err != nil {
		t.Fatal(err)
	}
	th.appendEvents(100, temp)
	last := th.h.LastSeq()
	waitFor(t, 90*time.Second, "both endpoints caught up", func() bool { return r.cursorOf("js") == last && r.cursorOf("k") == last })
	streamContents(t, st).check(t, "JetStream", last)
	topicContents(t, brokers, "outpost-events", last).check(t, "Kafka", last)
	m := th.metrics()
	for _, want := range []string{`outpost_hub_route_backlog{endpoint="js"} 0`, `outpost_hub_route_backlog{endpoint="k"} 0`,
		`outpost_hub_route_up{endpoint="js"} 1`, `outpost_hub_route_skipped_total{endpoint="k"} 0`,
		fmt.Sprintf(`outpost_hub_route_cursor{endpoint="js"} %d`, last)} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestDeadWebhookDoesNotStallNATS: a webhook that refuses connections and
// one that never answers hold back only their own cursors: NATS receives
// every event while their backlogs grow in /metrics.
func TestDeadWebhookDoesNotStallNATS(t *testing.T) {
	ns := startNATS(t)
	st := ns.stream("outpost.events")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close() // nothing listens there now
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(hang)
	routes := fmt.Sprintf(`
[[endpoint]]
name = "js"
type = "nats"
url = %q
subject = "outpost.events"
[[endpoint]]
name = "dead"
type = "webhook"
url = "http://%s/ingest"
[[endpoint]]
name = "slow"
type = "webhook"
url = "%s/ingest"
[[route]]
name = "a"
query = "FROM /messages/* INTO js"
[[route]]
name = "b"
query = "FROM /messages/* INTO dead"
[[route]]
name = "c"
query = "FROM /messages/* INTO slow"
`, ns.URL, refused, slow.URL)
	th := openTestHub(t, "dev1", "dev2")
	r, _ := runRouter(t, th, routes, DialOptions{HubID: "inc1"})
	th.appendEvents(500, func(int) int { return 20 })
	last := th.h.LastSeq()
	waitFor(t, 30*time.Second, "NATS caught up", func() bool { return r.cursorOf("js") == last })
	th.appendEvents(200, func(int) int { return 20 })
	last = th.h.LastSeq()
	waitFor(t, 30*time.Second, "NATS caught up again", func() bool { return r.cursorOf("js") == last })
	streamContents(t, st).check(t, "JetStream", last)
	m := th.metrics()
	for _, want := range []string{
		fmt.Sprintf(`outpost_hub_route_backlog{endpoint="dead"} %d`, last), fmt.Sprintf(`outpost_hub_route_backlog{endpoint="slow"} %d`, last),
		`outpost_hub_route_backlog{endpoint="js"} 0`, `outpost_hub_route_up{endpoint="dead"} 0`, `outpost_hub_route_up{endpoint="js"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, m)
		}
	}
	if !regexp.MustCompile(`outpost_hub_route_errors_total\{endpoint="dead"\} [1-9]`).MatchString(m) {
		t.Errorf("/metrics counts no errors of the dead webhook")
	}
}

// TestWebhookRouteCondition: a TLS webhook trusted through its CA gets,
// with its headers, only the events its route's condition selects, as
// JSON arrays carrying each seq; its cursor moves over the others.
func TestWebhookRouteCondition(t *testing.T) {
	var mu sync.Mutex
	var got []uint64
	var auth []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var evs []struct {
			Seq      uint64 `json:"seq"`
			DeviceID string `json:"deviceId"`
			Body     []byte `json:"body"`
		}
		if err := json.Unmarshal(body, &evs); err != nil || len(evs) == 0 {
			http.Error(w, "bad batch", 400)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		auth = append(auth, r.Header.Get("Authorization"))
		for _, e := range evs {
			if e.DeviceID != "dev1" {
				t.Errorf("event %d of %s reached the webhook", e.Seq, e.DeviceID)
			}
			got = append(got, e.Seq)
		}
	}))
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	routes := fmt.Sprintf(`
[[endpoint]]
name = "hook"
type = "webhook"
url = "%s/ingest"
ca = "hook-ca.pem"
headers = { Authorization = "Bearer s3cret" }
[[route]]
name = "hot"
query = "FROM /messages/* WHERE $body.temp > 30 AND $connectionDeviceId = 'dev1' INTO hook"
`, srv.URL)
	th := openTestHub(t, "dev1", "dev2")
	// Event i comes from dev1 when i is even (appendEvents alternates).
	temp := func(i int) int { return i % 60 }
	r, _ := runRouter(t, th, routes, DialOptions{HubID: "inc1", CA: ca})
	th.appendEvents(300, temp)
	last := th.h.LastSeq()
	waitFor(t, 30*time.Second, "the webhook's cursor at the end of the log", func() bool { return r.cursorOf("hook") == last })
	var want []uint64
	for i := uint64(1); i <= last; i++ {
		if i%2 == 0 && temp(int(i)) > 30 {
			want = append(want, i)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, want) {
		t.Fatalf("webhook got %v\nwant %v", got, want)
	}
	for _, a := range auth {
		if a != "Bearer s3cret" {
			t.Fatalf("Authorization %q", a)
		}
	}
}

// TestWebhookUntrusted: without its CA the webhook's certificate is
// refused (system roots only): nothing is delivered, the error counted.
func TestWebhookUntrusted(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	th := openTestHub(t, "dev1")
	r, _ := runRouter(t, th, fmt.Sprintf("[[endpoint]]\nname = \"hook\"\ntype = \"webhook\"\nurl = %q\n[[route]]\nname = \"r\"\nquery = \"FROM /* INTO hook\"\n", srv.URL), DialOptions{})
	th.appendEvents(3, func(int) int { return 0 })
	waitFor(t, 10*time.Second, "a failed delivery", func() bool { return r.lanes[0].errors.Load() > 0 })
	if r.cursorOf("hook") != 0 || hits.Load() != 0 {
		t.Fatalf("cursor %d, %d requests served: an untrusted endpoint took events", r.cursorOf("hook"), hits.Load())
	}
}

// TestNATSWithoutStreamSaysSo: publishing to a subject no JetStream
// stream captures fails with an error that says so and what to do; once a
// stream captures it, the same batch is delivered.
func TestNATSWithoutStreamSaysSo(t *testing.T) {
	ns := startNATS(t)
	ep, err := Dial(EndpointConfig{Name: "js", Type: TypeNATS, URL: ns.URL, Subject: "outpost.events"}, DialOptions{HubID: "inc1"})
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	batch := []Event{{Seq: 1, DeviceID: "dev1", JSON: []byte(`{"seq":1,"deviceId":"dev1"}`)}}
	var derr error
	waitFor(t, 20*time.Second, "a refused publish", func() bool {
		derr = ep.Deliver(t.Context(), batch)
		return derr != nil && !strings.Contains(derr.Error(), "not connected")
	})
	for _, want := range []string{"no JetStream stream", `captures subject "outpost.events"`, "nats stream add"} {
		if !strings.Contains(derr.Error(), want) {
			t.Errorf("error %q lacks %q", derr, want)
		}
	}
	st := ns.stream("outpost.events")
	if err := ep.Deliver(t.Context(), batch); err != nil {
		t.Fatalf("with a stream: %v", err)
	}
	streamContents(t, st).check(t, "JetStream", 1)
}
