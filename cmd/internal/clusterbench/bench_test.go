package clusterbench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/sync/protocol"
	"github.com/outpost-edge/outpost/sync/upstream"
)

// sink stands in for the edge's broker: these benchmarks measure the hub.
type sink struct{}

func (sink) TwinChanges([]twin.Change)                            {}
func (sink) Disconnect(string, string)                            {}
func (sink) PurgeQueues(context.Context, string) (int, error)     { return 0, nil }
func (sink) SendC2D(context.Context, string, queue.Message) error { return nil }
func (sink) InvokeMethod(context.Context, string, string, []byte, time.Duration) protocol.MethodResult {
	return protocol.MethodResult{Status: 404, Error: "no devices in a benchmark"}
}

// edge is one edge device: its own kv store, queues, twins and identity
// cache, and a sync/upstream link to one hub node, as `outpost edge` has.
type edge struct {
	db     *kv.DB
	queues *queue.Store
	up     *queue.Queue
	link   *upstream.Link
	child  string
	ids    int
}

func newEdge(b testing.TB, ctx context.Context, dir string, urls []string, gw, child string, gwID identity.JSON) *edge {
	b.Helper()
	e := &edge{child: child}
	var err error
	e.db, err = kv.Open(dir, kv.Options{})
	check(b, err)
	e.queues, err = queue.Open(ctx, e.db, queue.Options{})
	check(b, err)
	twins, err := twin.Open(ctx, e.db, twin.Options{Role: twin.Edge, Name: gw})
	check(b, err)
	ids, err := identity.Open(ctx, e.db, identity.Options{})
	check(b, err)
	e.link, err = upstream.New(upstream.Options{URLs: urls, DB: e.db, Queues: e.queues, Twins: twins, Identities: ids, Target: sink{},
		Logger: logger(), Edge: sas.ConnString{HostName: hostName, DeviceID: gw, SharedAccessKey: gwID.Authentication.SymmetricKey.PrimaryKey}})
	check(b, err)
	e.up, err = e.queues.Queue("$upstream/pdefault", queue.QueueOptions{})
	check(b, err)
	return e
}

func (e *edge) close() {
	_ = e.queues.Close()
	_ = e.db.Close()
}

// fill queues n telemetry messages of about size bytes (JSON with a
// random tail, so compression does not flatter the figures).
func (e *edge) fill(b testing.TB, ctx context.Context, n, size int) {
	b.Helper()
	for i := 0; i < n; {
		batch := make([]queue.Message, 0, 1000)
		for ; i < n && len(batch) < 1000; i++ {
			body := fmt.Sprintf(`{"seq":%d,"t":%.2f,"noise":"%s"}`, i, 20+float64(i%100)/10, randomHex(size))
			e.ids++
			batch = append(batch, queue.Message{ID: fmt.Sprintf("m%d", e.ids), Source: "devices/" + e.child, Body: []byte(body[:min(len(body), size)]),
				Sys: map[string]string{"connectionDeviceId": e.child, "contentType": "application/json"}})
		}
		_, err := e.up.Append(ctx, batch...)
		check(b, err)
	}
}

func randomHex(n int) string {
	buf := make([]byte, n/2+1)
	_, _ = rand.Read(buf)
	return hex.EncodeToString(buf)
}

// cpuTime is the process's user and system CPU time so far: every node
// and every edge of the in-process benchmarks is in it.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// singleRates are the events/s of the single runs so far, for the
// clusters' ratio: with -count N, go test runs a sub-benchmark N times
// before the next, so every single run comes before the clusters'.
var singleRates []float64

// medianSingle is the median of singleRates (0 without any).
func medianSingle() float64 {
	s := slices.Clone(singleRates)
	slices.Sort(s)
	switch {
	case len(s) == 0:
		return 0
	case len(s)%2 == 1:
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// BenchmarkClusterDrain: 10 edges (real sync/upstream links, each over its
// own kv store, all in this process), each with a backlog of 20 000
// telemetry messages of 100 bytes, drain at once into a single hub
// (`outpost hub` without cluster flags: commands applied directly), a
// one-node raft cluster, and a three-node cluster with the edges spread
// over the three nodes' URLs, each edge given one (raft3: followers
// forward to the leader) or all three starting at its own (raft3list: the
// edges move to the leader, which names itself on its answers). Every hub
// is cmd/internal/hub.Run in this process, so the three nodes share the
// machine's cores with each other and with the edges. Reports events
// appended per second, events per CPU-second of the whole process (hubs
// and edges), the cores the process used, the ratio of events/s to the
// median of the single hub's runs in the same `go test` (x_single), and
// the size of the first node's raft log per event (raftlog-B/event).
func BenchmarkClusterDrain(b *testing.B) {
	for _, c := range []struct {
		name  string
		nodes int
		list  bool
	}{{"single", 0, false}, {"raft1", 1, false}, {"raft3", 3, false}, {"raft3list", 3, true}} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				drainOnce(b, c.nodes, c.list)
			}
		})
	}
}

const (
	drainEdges   = 10
	drainPerEdge = 20_000
	drainSize    = 100
)

// drainRig starts the hubs (size nodes, 0: a single hub) in root and the
// edges with their backlogs; run starts the edges' links; stop ends them
// all.
func drainRig(b *testing.B, root string, size int, list bool) (urls []string, run, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	key := sas.GenerateKey()
	nodes := startCluster(b, root, size, key)
	for _, n := range nodes {
		urls = append(urls, n.url)
	}
	var edges []*edge
	done := make(chan struct{}, drainEdges)
	started := 0
	stop = sync.OnceFunc(func() {
		cancel()
		for range started {
			<-done
		}
		for _, e := range edges {
			e.close()
		}
		for _, n := range nodes {
			n.stop()
		}
	})
	b.Cleanup(stop) // if a step below fails
	for i := range drainEdges {
		gw, child := fmt.Sprintf("gw%d", i), fmt.Sprintf("dev%d", i)
		id, err := putEdge(key, urls[0], gw, child)
		check(b, err)
		mine := []string{urls[i%len(urls)]}
		if list { // all the nodes, starting at the edge's own
			mine = append(urls[i%len(urls):len(urls):len(urls)], urls[:i%len(urls)]...)
		}
		e := newEdge(b, ctx, filepath.Join(root, "edge-"+gw), mine, gw, child, id)
		edges = append(edges, e)
		e.fill(b, ctx, drainPerEdge, drainSize)
	}
	run = func() {
		for _, e := range edges {
			started++
			go func() { _ = e.link.Run(ctx); done <- struct{}{} }()
		}
	}
	return urls, run, stop
}

func drainOnce(b *testing.B, size int, list bool) {
	b.StopTimer()
	root := b.TempDir()
	urls, run, stop := drainRig(b, root, size, list)
	defer stop()
	const total = drainEdges * drainPerEdge
	cpu0, t0 := cpuTime(), time.Now()
	b.StartTimer()
	run()
	eventually(b, fmt.Sprintf("%d events at the hub", total), 5*time.Minute, func() error {
		n, err := lastSeq(urls)
		if err == nil && n < total {
			err = fmt.Errorf("%d events", n)
		}
		return err
	})
	b.StopTimer()
	el, cpu := time.Since(t0), cpuTime()-cpu0
	if n, err := lastSeq(urls); err != nil || n != total {
		b.Fatalf("the hub holds %d events (%v), want exactly %d", n, err, total)
	}
	rate := total / el.Seconds()
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(total/cpu.Seconds(), "events/cpu-s")
	b.ReportMetric(cpu.Seconds()/el.Seconds(), "cores")
	if size > 0 { // the first node's raft log (its bolt file), per event
		st, err := os.Stat(filepath.Join(root, "n1", "raft", "raft.db"))
		check(b, err)
		b.ReportMetric(float64(st.Size())/total, "raftlog-B/event")
	}
	if size == 0 {
		singleRates = append(singleRates, rate)
	} else if m := medianSingle(); m > 0 {
		b.ReportMetric(rate/m, "x_single")
	}
}
