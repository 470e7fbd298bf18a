package queue

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/disk"
	"github.com/outpost-edge/outpost/store/kv"
)

const benchBody = 256

func benchEnv(b *testing.B, dur kv.Durability) *env {
	e := &env{t: b, dir: b.TempDir(), dur: dur}
	e.open()
	b.Cleanup(e.close)
	return e
}

func benchMsgs(n int) []Message {
	ms := make([]Message, n)
	for i := range ms {
		ms[i].Body = make([]byte, benchBody)
	}
	return ms
}

var durabilities = []kv.Durability{kv.Process, kv.Power}

// BenchmarkAppendSingle: 10 producers (like 10 QoS1 publishers) each
// appending one message per call; each iteration stores 10 000 messages.
func BenchmarkAppendSingle(b *testing.B) {
	for _, dur := range durabilities {
		b.Run(dur.String(), func(b *testing.B) {
			appendSingle(b, benchEnv(b, dur).queue("q", QueueOptions{}))
		})
	}
}

// BenchmarkAppendBatch100: one producer appending batches of 100; each
// iteration stores 10 000 messages.
func BenchmarkAppendBatch100(b *testing.B) {
	for _, dur := range durabilities {
		b.Run(dur.String(), func(b *testing.B) {
			q := benchEnv(b, dur).queue("q", QueueOptions{})
			ms := benchMsgs(100)
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				for i := 0; i < 100; i++ {
					if _, err := q.Append(bg, ms...); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N*10_000)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

// BenchmarkDrain leases and acks a 100k backlog in batches of 500.
func BenchmarkDrain(b *testing.B) {
	const backlog = 100_000
	q := benchEnv(b, kv.Process).queue("q", QueueOptions{})
	var spent time.Duration
	for b.Loop() {
		b.StopTimer()
		fill(b, q, backlog, benchBody, 1000)
		b.StartTimer()
		start := time.Now()
		if n := drain(b, q, 500); n != backlog {
			b.Fatalf("drained %d", n)
		}
		spent += time.Since(start)
	}
	b.ReportMetric(float64(b.N*backlog)/spent.Seconds(), "msgs/s")
}

const backlogDirEnv = "OUTPOST_QUEUE_BACKLOG_DIR"

// BenchmarkBacklog1M stores 1 000 000 × 256 B messages in a fresh process
// (its peak RSS is the memory that a million queued messages need), then
// reopens the store in another fresh process and reports reopen time, the
// memory of that process, and the rate at which it drains the backlog.
func BenchmarkBacklog1M(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		dir := b.TempDir()
		empty := diskUsage(b, dir)
		fill := runBacklogChild(b, dir, "fill")
		disk := diskUsage(b, dir)
		res := runBacklogChild(b, dir, "reopen")
		b.ReportMetric(fill["append_msgs/s"], "append_msgs/s")
		b.ReportMetric(fill["peak_anon_MB"], "fill_peak_anon_MB")
		b.ReportMetric(fill["peak_rss_MB"], "fill_peak_rss_MB")
		b.ReportMetric(float64(disk-empty)/n, "disk_B/msg")
		b.ReportMetric(float64(disk-empty)/n/benchBody, "disk/payload")
		for _, k := range []string{"reopen_ms", "first_lease_ms", "open_anon_MB", "open_rss_MB", "drain_msgs/s", "peak_anon_MB", "peak_rss_MB", "after_drain_disk_B"} {
			b.ReportMetric(res[k], k)
		}
	}
}

func runBacklogChild(b *testing.B, dir, mode string) map[string]float64 {
	cmd := exec.Command(os.Args[0], "-test.run=^TestBacklogChild$", "-test.count=1")
	// The edge runs with a 128 MiB soft memory limit (GOMEMLIMIT): without
	// it the Go heap of a bulk fill grows to twice Badger's live buffers.
	cmd.Env = append(os.Environ(), backlogDirEnv+"="+dir, backlogModeEnv+"="+mode, "GOMEMLIMIT="+benchMemLimit)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("backlog child: %v\n%s", err, out)
	}
	res := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				res[k] = f
			}
		}
	}
	if res["depth"] != 1_000_000 {
		b.Fatalf("backlog child (%s) saw %v messages:\n%s", mode, res["depth"], out)
	}
	return res
}

const backlogModeEnv = "OUTPOST_QUEUE_BACKLOG_MODE"

// benchMemLimit is GOMEMLIMIT for the backlog processes; BACKLOG_GOMEMLIMIT
// overrides it ("off" measures without a limit).
var benchMemLimit = cmp.Or(os.Getenv("BACKLOG_GOMEMLIMIT"), "128MiB")

// TestBacklogChild is a fresh process of BenchmarkBacklog1M: mode "fill"
// appends the million messages, mode "reopen" opens them and drains them.
func TestBacklogChild(t *testing.T) {
	dir := os.Getenv(backlogDirEnv)
	if dir == "" {
		t.Skip("helper process for BenchmarkBacklog1M")
	}
	start := time.Now()
	db, err := kv.Open(dir, kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), db, Options{})
	if err != nil {
		t.Fatal(err)
	}
	q, err := s.Queue("q", QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reopen := time.Since(start)
	peak := watchMem()
	if os.Getenv(backlogModeEnv) == "fill" {
		fill(t, q, 1_000_000, benchBody, 1000)
		fmt.Printf("append_msgs/s=%.0f\ndepth=%d\n", 1e6/time.Since(start).Seconds(), q.Stats().Depth)
	} else {
		start = time.Now()
		ms, err := q.Lease(500, 0)
		if err != nil || len(ms) != 500 {
			t.Fatalf("lease: %d, %v", len(ms), err)
		}
		fmt.Printf("reopen_ms=%.2f\nfirst_lease_ms=%.2f\n", float64(reopen.Microseconds())/1000, float64(time.Since(start).Microseconds())/1000)
		peak.print("open_")
		q.Rewind()
		fmt.Printf("depth=%d\n", q.Stats().Depth)
		start = time.Now()
		drainAll(t, q)
		fmt.Printf("drain_msgs/s=%.0f\n", 1e6/time.Since(start).Seconds())
	}
	peak.print("peak_")
	_ = s.Close()
	if os.Getenv(backlogModeEnv) != "fill" {
		if err := db.Reclaim(context.Background()); err != nil {
			t.Fatal(err)
		}
		n, _ := kv.DiskUsage(dir)
		fmt.Printf("after_drain_disk_B=%d\n", n)
	}
	_ = db.Close()
}

func drainAll(t *testing.T, q *Queue) {
	for {
		ms, err := q.Lease(1000, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			return
		}
		if err := q.Ack(context.Background(), ms[len(ms)-1].Seq); err != nil {
			t.Fatal(err)
		}
	}
}

// memPeak samples this process's memory every 50 ms: the peak of anonymous
// memory (Go heap, Badger's memtables and builders) and of all resident
// memory, which also counts the pages of Badger's memory-mapped table files
// the kernel has mapped in (file cache it can evict under pressure).
type memPeak struct {
	mu          sync.Mutex
	anon, total float64
	stop        chan struct{}
}

func watchMem() *memPeak {
	p := &memPeak{stop: make(chan struct{})}
	go func() {
		for {
			p.sample()
			select {
			case <-p.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return p
}

func (p *memPeak) sample() {
	status, _ := os.ReadFile("/proc/self/status")
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range strings.Split(string(status), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		mb, _ := strconv.ParseFloat(f[1], 64)
		mb /= 1024
		switch f[0] {
		case "RssAnon:":
			p.anon = max(p.anon, mb)
		case "VmRSS:":
			p.total = max(p.total, mb)
		}
	}
}

// print reports the peaks as <prefix>anon_MB and <prefix>rss_MB.
func (p *memPeak) print(prefix string) {
	p.sample()
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Printf("%sanon_MB=%.1f\n%srss_MB=%.1f\n", prefix, p.anon, prefix, p.total)
}

// appendSingle is the body of the AppendSingle benchmarks: 10 producers
// append 1 000 messages each, one per call, per iteration.
func appendSingle(b *testing.B, q *Queue) {
	const producers, each = 10, 1000
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		var wg sync.WaitGroup
		for p := 0; p < producers; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m := benchMsgs(1)
				for i := 0; i < each; i++ {
					if _, err := q.Append(bg, m...); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	b.ReportMetric(float64(b.N*producers*each)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkAppendSingleDiskGate is BenchmarkAppendSingle (process
// durability) without and with a disk monitor charging every append and
// filling the store's holes (as the edge runs it), on a disk with room: the
// gate's cost on the ingest path.
func BenchmarkAppendSingleDiskGate(b *testing.B) {
	for _, gated := range []bool{false, true} {
		b.Run(fmt.Sprintf("gate=%v", gated), func(b *testing.B) {
			e := &env{t: b, dir: b.TempDir(), dur: kv.Process}
			if gated {
				m, err := disk.Open(disk.Options{Dir: e.dir, Allowance: kv.Allowance(kv.Options{}), Budget: 4 << 20, FillHoles: true})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = m.Close() })
				e.opts.Space = m
			}
			e.open()
			b.Cleanup(e.close)
			appendSingle(b, e.queue("q", QueueOptions{}))
		})
	}
}
