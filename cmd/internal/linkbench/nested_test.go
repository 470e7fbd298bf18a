package linkbench

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/linkproxy"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/sync/downstream"
	"github.com/outpost-edge/outpost/sync/upstream"
)

// nested is a second layer under a rig's edge (gw1): edge l3, a child of
// gw1, with its own store, whose link goes to gw1's downstream server
// (sync/downstream) through a proxy of its own.
type nested struct {
	*rig
	proxy *linkproxy.Proxy // l3 – gw1
	up    *queue.Queue     // l3's $upstream/pdefault
	start func()           // runs l3's link
}

// newNested opens the rig (its link running, so gw1 learns its subtree),
// edge l3 under gw1 with a device dev3, and gw1's downstream server.
func newNested(b *testing.B) *nested {
	b.Helper()
	r := newRig(b)
	ctx := r.ctx
	l3, err := r.hub.PutDevice(ctx, identity.JSON{DeviceID: "l3", Capabilities: &identity.Capabilities{IoTEdge: true}, ParentScopes: []string{r.gw.DeviceScope}})
	check(b, err)
	_, err = r.hub.PutDevice(ctx, identity.JSON{DeviceID: "dev3", ParentScopes: []string{l3.DeviceScope}})
	check(b, err)
	r.start()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, ok, _ := r.cache.Get("dev3"); ok {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("gw1 never learnt its subtree (dev3 under l3)")
		}
	}
	srv, err := downstream.New(downstream.Options{Edge: "gw1", HostName: "hub.bench", DB: r.db, Queues: r.queues, Identities: r.cache,
		Replica: string(r.twins.Replica())})
	check(b, err)
	hs := httptest.NewServer(srv.Handler())
	n := &nested{rig: r}
	n.proxy, err = linkproxy.Open("127.0.0.1:0", strings.TrimPrefix(hs.URL, "http://"), linkproxy.Options{})
	check(b, err)
	db, err := kv.Open(b.TempDir(), kv.Options{})
	check(b, err)
	queues, err := queue.Open(ctx, db, queue.Options{})
	check(b, err)
	twins, err := twin.Open(ctx, db, twin.Options{Role: twin.Edge, Name: "l3"})
	check(b, err)
	ids, err := identity.Open(ctx, db, identity.Options{})
	check(b, err)
	link, err := upstream.New(upstream.Options{URL: "http://" + n.proxy.Addr().String(), DB: db, Queues: queues, Twins: twins,
		Identities: ids, Target: sink{}, Edge: sas.ConnString{HostName: "hub.bench", DeviceID: "l3", SharedAccessKey: l3.Auth.PrimaryKey}})
	check(b, err)
	n.up, err = queues.Queue("$upstream/pdefault", queue.QueueOptions{})
	check(b, err)
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	started := false
	n.start = func() {
		started = true
		go func() { defer close(done); _ = link.Run(lctx) }()
	}
	b.Cleanup(func() { // before the rig's own cleanup (registered earlier, run later)
		cancel()
		if started {
			<-done
		}
		n.proxy.Close()
		hs.CloseClientConnections()
		hs.Close()
		_ = queues.Close()
		_ = db.Close()
	})
	return n
}

// BenchmarkDrainNested: a backlog of 100 000 messages of 100 bytes drains
// over loopback from an edge straight to the hub (one layer), then from an
// edge under a parent edge (two layers: l3 → gw1 → hub), in the same run;
// msgs/s of each and their ratio.
func BenchmarkDrainNested(b *testing.B) {
	const n, size = 100_000, 100
	for range b.N {
		r := newRig(b)
		r.fill(b, n, size)
		t0 := time.Now()
		r.start()
		r.waitEvents(b, n, 5*time.Minute)
		one := float64(n) / time.Since(t0).Seconds()

		ns := newNested(b)
		base := ns.hub.LastSeq()
		ns.fillQueue(b, ns.up, "dev3", n, size)
		t0 = time.Now()
		ns.start()
		ns.waitEvents(b, base+n, 5*time.Minute)
		two := float64(n) / time.Since(t0).Seconds()
		b.ReportMetric(one, "msgs/s_1layer")
		b.ReportMetric(two, "msgs/s_2layers")
		b.ReportMetric(two/one, "ratio_2to1")
	}
}

// BenchmarkNestedLinkUpToFirstMessage: with a backlog in both layers (l3's
// messages queued at gw1 while the top link was cut, and more at l3 while
// l3–gw1 was cut too) and both links cut long enough for the backoff to
// reach its cap, the time from restoring both to the first message stored
// at the hub.
func BenchmarkNestedLinkUpToFirstMessage(b *testing.B) {
	ns := newNested(b)
	ns.start()
	var total time.Duration
	for i := range b.N {
		ns.rig.proxy.Cut()
		gw := ns.rig.up.Stats().Depth
		ns.fillQueue(b, ns.up, "dev3", 100, 100)
		for deadline := time.Now().Add(time.Minute); ns.rig.up.Stats().Depth < gw+100; time.Sleep(2 * time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatal("l3's messages never reached gw1")
			}
		}
		ns.proxy.Cut()
		ns.fillQueue(b, ns.up, "dev3", 100, 100)
		time.Sleep(3*time.Second + time.Duration(i%7)*130*time.Millisecond) // offline; vary the backoff phase
		want := ns.hub.LastSeq() + 1
		t0 := time.Now()
		ns.proxy.Restore()
		ns.rig.proxy.Restore()
		ns.waitEvents(b, want, time.Minute)
		total += time.Since(t0)
		ns.waitEvents(b, want-1+200, time.Minute) // both backlogs drain before the next round
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms_to_first")
}
