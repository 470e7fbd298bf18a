package linkbench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/linkproxy"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/store/twin"
	synchub "github.com/outpost-edge/outpost/sync/hub"
	"github.com/outpost-edge/outpost/sync/protocol"
	"github.com/outpost-edge/outpost/sync/upstream"
)

// sink stands in for the broker: these benchmarks measure the link.
type sink struct{}

func (sink) TwinChanges([]twin.Change)                            {}
func (sink) Disconnect(string, string)                            {}
func (sink) PurgeQueues(context.Context, string) (int, error)     { return 0, nil }
func (sink) SendC2D(context.Context, string, queue.Message) error { return nil }
func (sink) InvokeMethod(context.Context, string, string, []byte, time.Duration) protocol.MethodResult {
	return protocol.MethodResult{Status: 404, Error: "no devices in a benchmark"}
}

type rig struct {
	ctx    context.Context
	hub    *synchub.Hub
	proxy  *linkproxy.Proxy
	db     *kv.DB
	queues *queue.Store
	twins  *twin.Store
	link   *upstream.Link
	up     *queue.Queue
	start  func()
	ids    int
	cache  *identity.Cache   // the edge's identity cache
	gw     identity.Identity // the edge's registry entry (its deviceScope, its key)
}

// newRig opens a hub and an edge store in temporary directories, with the
// proxy between them; start runs the link.
func newRig(b *testing.B) *rig {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &rig{ctx: ctx}
	var err error
	r.hub, err = synchub.Open(ctx, b.TempDir(), synchub.Options{HostName: "hub.bench", OwnerKey: []byte("k")})
	check(b, err)
	srv := httptest.NewServer(r.hub.Handler())
	r.proxy, err = linkproxy.Open("127.0.0.1:0", strings.TrimPrefix(srv.URL, "http://"), linkproxy.Options{})
	check(b, err)
	gw, err := r.hub.PutDevice(ctx, identity.JSON{DeviceID: "gw1", Capabilities: &identity.Capabilities{IoTEdge: true}})
	check(b, err)
	_, err = r.hub.PutDevice(ctx, identity.JSON{DeviceID: "dev1", ParentScopes: []string{gw.DeviceScope}})
	check(b, err)
	r.db, err = kv.Open(b.TempDir(), kv.Options{})
	check(b, err)
	r.queues, err = queue.Open(ctx, r.db, queue.Options{})
	check(b, err)
	r.twins, err = twin.Open(ctx, r.db, twin.Options{Role: twin.Edge, Name: "gw1"})
	check(b, err)
	ids, err := identity.Open(ctx, r.db, identity.Options{})
	check(b, err)
	r.cache, r.gw = ids, gw
	var log *slog.Logger
	if os.Getenv("LINKBENCH_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	r.link, err = upstream.New(upstream.Options{URL: "http://" + r.proxy.Addr().String(), DB: r.db, Queues: r.queues, Twins: r.twins, Logger: log,
		Identities: ids, Target: sink{}, Edge: sas.ConnString{HostName: "hub.bench", DeviceID: "gw1", SharedAccessKey: gw.Auth.PrimaryKey}})
	check(b, err)
	r.up, err = r.queues.Queue("$upstream/pdefault", queue.QueueOptions{})
	check(b, err)
	done := make(chan struct{})
	started := false
	r.start = func() {
		started = true
		go func() { defer close(done); _ = r.link.Run(ctx) }()
	}
	b.Cleanup(func() {
		cancel()
		if started {
			<-done
		}
		r.proxy.Close()
		srv.CloseClientConnections()
		srv.Close()
		_ = r.queues.Close()
		_ = r.db.Close()
		_ = r.hub.Close()
	})
	return r
}

func check(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// fill queues n telemetry messages of size bytes: JSON with a random tail,
// so compression does not flatter the figures.
func (r *rig) fill(b *testing.B, n, size int) int64 {
	return r.fillQueue(b, r.up, "dev1", n, size)
}

// fillQueue queues n telemetry messages of device dev into q.
func (r *rig) fillQueue(b *testing.B, q *queue.Queue, dev string, n, size int) int64 {
	var payload int64
	for i := 0; i < n; {
		batch := make([]queue.Message, 0, 1000)
		for ; i < n && len(batch) < 1000; i++ {
			body := fmt.Sprintf(`{"seq":%d,"t":%.2f,"noise":"%s"}`, i, 20+float64(i%100)/10, randomHex(size))
			body = body[:min(len(body), size)]
			payload += int64(len(body))
			r.ids++ // unique message ids, as devices should (the hub does not rely on them)
			batch = append(batch, queue.Message{ID: fmt.Sprintf("m%d", r.ids), Source: "devices/" + dev, Body: []byte(body),
				Sys: map[string]string{"connectionDeviceId": dev, "contentType": "application/json"}})
		}
		_, err := q.Append(r.ctx, batch...)
		check(b, err)
	}
	return payload
}

func randomHex(n int) string {
	buf := make([]byte, n/2+1)
	_, _ = rand.Read(buf)
	return hex.EncodeToString(buf)
}

func (r *rig) waitEvents(b *testing.B, n uint64, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for r.hub.LastSeq() < n {
		if time.Now().After(deadline) {
			if os.Getenv("LINKBENCH_LOG") != "" {
				_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
			}
			b.Fatalf("%d of %d events at the hub after %s", r.hub.LastSeq(), n, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// BenchmarkDrainLoopback: a backlog of 100 000 messages of 100 bytes
// drains over loopback; msgs/s and bytes on the wire per message.
func BenchmarkDrainLoopback(b *testing.B) {
	const n, size = 100_000, 100
	for range b.N {
		r := newRig(b)
		r.fill(b, n, size)
		before := r.proxy.Stats()
		t0 := time.Now()
		r.start()
		r.waitEvents(b, n, 5*time.Minute)
		el := time.Since(t0)
		st := r.proxy.Stats()
		b.ReportMetric(float64(n)/el.Seconds(), "msgs/s")
		b.ReportMetric(float64(st.BytesUp-before.BytesUp)/n, "wire_B/msg")
	}
}

// BenchmarkDrainThrottled: the same backlog (20 000 messages) over a link
// throttled to 1 MB/s each way: how much of the link the drain uses, and
// the payload delivered per second against the link's rate.
func BenchmarkDrainThrottled(b *testing.B) {
	const n, size, rate = 20_000, 100, 1_000_000
	for range b.N {
		r := newRig(b)
		payload := r.fill(b, n, size)
		r.proxy.SetRate(rate)
		before := r.proxy.Stats()
		t0 := time.Now()
		r.start()
		r.waitEvents(b, n, 5*time.Minute)
		el := time.Since(t0)
		up := r.proxy.Stats().BytesUp - before.BytesUp
		b.ReportMetric(float64(up)/el.Seconds()/rate, "link_use")
		b.ReportMetric(float64(payload)/el.Seconds()/rate, "payload/link")
		b.ReportMetric(float64(n)/el.Seconds(), "msgs/s")
		b.ReportMetric(float64(up)/n, "wire_B/msg")
	}
}

// BenchmarkLinkUpToFirstMessage: with the link cut long enough for the
// backoff to reach its cap, the time from restoring the link to the first
// queued message stored at the hub.
func BenchmarkLinkUpToFirstMessage(b *testing.B) {
	r := newRig(b)
	r.start()
	var total time.Duration
	for i := range b.N {
		r.proxy.Cut()
		r.fill(b, 1, 100)
		time.Sleep(3*time.Second + time.Duration(i%7)*130*time.Millisecond) // offline; vary the backoff phase
		want := r.hub.LastSeq() + 1
		t0 := time.Now()
		r.proxy.Restore()
		r.waitEvents(b, want, time.Minute)
		total += time.Since(t0)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms_to_first")
}

// BenchmarkTwin10kPatches: 10 000 reported patches to one twin while
// offline (30 properties, each overwritten many times), then the link comes
// back: the bytes that cross (HTTP included) against the final state.
func BenchmarkTwin10kPatches(b *testing.B) {
	const patches, keys = 10_000, 30
	for range b.N {
		r := newRig(b)
		r.start()
		deadline := time.Now().Add(30 * time.Second)
		for _, err := r.twins.Get("dev1"); err != nil; _, err = r.twins.Get("dev1") {
			if time.Now().After(deadline) {
				b.Fatal("the twin of dev1 did not arrive")
			}
			time.Sleep(5 * time.Millisecond)
		}
		r.proxy.Cut()
		vv0 := r.twins.VV()
		s, err := r.twins.BeginSession()
		check(b, err)
		for i := range patches {
			p := fmt.Sprintf(`{"p%d":{"v":%d,"unit":"C"}}`, i%keys, i)
			_, err := r.twins.PatchReported(r.ctx, "dev1", s, []byte(p))
			check(b, err)
		}
		v, err := r.twins.Get("dev1")
		check(b, err)
		state, _ := json.Marshal(v.Reported)
		delta, more, err := r.twins.Delta(vv0, 1<<20)
		check(b, err)
		frame, _, err := protocol.Encode(&protocol.TwinsUp{Instance: string(r.twins.Replica()), Batch: delta})
		check(b, err)
		if more || delta.Fields() > 10*keys { // a few registers per property, not one per patch
			b.Fatalf("the delta is not coalesced: %d fields (more %v)", delta.Fields(), more)
		}
		before := r.proxy.Stats()
		r.proxy.Restore()
		want := fmt.Sprintf(`"v":%d`, patches-1)
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
			doc, err := r.hub.Twin("dev1")
			check(b, err)
			if strings.Contains(string(doc), want) {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("the reported patches did not reach the hub")
			}
		}
		time.Sleep(100 * time.Millisecond) // let the hello and pull of the reconnect finish
		up := r.proxy.Stats().BytesUp - before.BytesUp
		b.ReportMetric(float64(len(state)), "state_B")
		b.ReportMetric(float64(len(frame)), "frame_B")
		b.ReportMetric(float64(len(frame))/float64(len(state)), "frame/state")
		b.ReportMetric(float64(up), "wire_B")
		b.ReportMetric(float64(up)/patches, "wire_B/patch")
	}
}
