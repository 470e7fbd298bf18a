package queue

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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
	const producers, each = 10, 1000
	for _, dur := range durabilities {
		b.Run(dur.String(), func(b *testing.B) {
			q := benchEnv(b, dur).queue("q", QueueOptions{})
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

// BenchmarkBacklog1M stores 1 000 000 × 256 B messages, then reopens the
// store in a fresh process and reports disk per message, reopen time and
// the memory of that process.
func BenchmarkBacklog1M(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		e := benchEnv(b, kv.Process)
		q := e.queue("q", QueueOptions{})
		empty := diskUsage(b, e.dir)
		start := time.Now()
		fill(b, q, n, benchBody, 1000)
		fillTime := time.Since(start)
		e.close()
		disk := diskUsage(b, e.dir)
		res := runBacklogChild(b, e.dir)
		b.ReportMetric(float64(n)/fillTime.Seconds(), "append_msgs/s")
		b.ReportMetric(float64(disk-empty)/n, "disk_B/msg")
		b.ReportMetric(float64(disk-empty)/n/benchBody, "disk/payload")
		for _, k := range []string{"reopen_ms", "first_lease_ms", "heap_MB", "rss_MB", "hwm_MB"} {
			b.ReportMetric(res[k], k)
		}
	}
}

func runBacklogChild(b *testing.B, dir string) map[string]float64 {
	cmd := exec.Command(os.Args[0], "-test.run=^TestBacklogChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), backlogDirEnv+"="+dir)
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
		b.Fatalf("backlog child saw %v messages:\n%s", res["depth"], out)
	}
	return res
}

// TestBacklogChild is the fresh process of BenchmarkBacklog1M.
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
	start = time.Now()
	ms, err := q.Lease(500, 0)
	if err != nil || len(ms) != 500 {
		t.Fatalf("lease: %d, %v", len(ms), err)
	}
	lease := time.Since(start)
	depth := q.Stats().Depth
	runtime.GC()
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	fmt.Printf("depth=%d\nreopen_ms=%.2f\nfirst_lease_ms=%.2f\nheap_MB=%.1f\n",
		depth, float64(reopen.Microseconds())/1000, float64(lease.Microseconds())/1000, float64(mem.HeapInuse)/(1<<20))
	status, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(status), "\n") {
		for key, name := range map[string]string{"VmRSS:": "rss_MB", "VmHWM:": "hwm_MB"} {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == key {
				kb, _ := strconv.ParseFloat(f[1], 64)
				fmt.Printf("%s=%.1f\n", name, kb/1024)
			}
		}
	}
	_ = s.Close()
	_ = db.Close()
}
