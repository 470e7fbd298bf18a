package soakbench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/localapi"
)

// The soak's shape. The run lasts SOAK_SECONDS; the hub is frozen from
// second freezeAt to freezeAt+freeze of every cycle.
const (
	rate        = 1000.0 // msg/s offered in total
	clients     = 4
	bodySize    = 100
	cycle       = time.Minute
	freezeAt    = 20 * time.Second
	freeze      = 15 * time.Second
	sampleEvery = 5 * time.Second
	drainLimit  = 5 * time.Minute
)

// soakDuration is SOAK_SECONDS (default 600).
func soakDuration(b testing.TB) time.Duration {
	s := os.Getenv("SOAK_SECONDS")
	if s == "" {
		return 10 * time.Minute
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 30 {
		b.Fatalf("SOAK_SECONDS=%q: want a number of seconds, at least 30", s)
	}
	return time.Duration(n) * time.Second
}

// warmupOf is the part of a run left out of the figures: 20 % of it, at
// most 2 minutes, rounded up to whole cycles so every cycle fitted starts
// at the same phase of the freeze (not rounded in a run too short to
// leave a whole cycle after it).
func warmupOf(d time.Duration) time.Duration {
	w := min(2*time.Minute, d/5)
	if r := (w + cycle - 1) / cycle * cycle; d-r >= cycle {
		return r
	}
	return w
}

// BenchmarkSoak: an edge and a hub (real processes) under 1 000 msg/s of
// QoS 1 telemetry for SOAK_SECONDS with the hub frozen 15 s a minute; the
// edge's resources sampled, their trend after warm-up reported; then every
// acknowledged message must be at the hub exactly once.
func BenchmarkSoak(b *testing.B) {
	d := soakDuration(b)
	for range b.N {
		soak(b, d)
	}
}

func soak(b *testing.B, d time.Duration) {
	bin := outpostBinary(b)
	dir := b.TempDir()
	h := startHub(b, bin, filepath.Join(dir, "hub"))
	key := []byte("outpost-soak-benchmark-device-key")
	var ids []string
	for i := range clients {
		ids = append(ids, fmt.Sprintf("soak-%d", i))
	}
	cs, err := h.createDevices(key, ids)
	check(b, err)
	e := startEdge(b, bin, filepath.Join(dir, "edge"), h.url, cs)
	pubs := make([]*publisher, len(ids))
	for i, id := range ids {
		pubs[i], err = dialRetry(e.ready.MQTT, id, key)
		check(b, err)
		defer pubs[i].cli.Disconnect(250)
	}

	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	t0 := time.Now()
	var wg sync.WaitGroup
	for _, p := range pubs {
		wg.Go(func() { p.run(ctx, rate/clients, body) })
	}
	var samples []sample
	var sampleErr error
	wg.Go(func() { samples, sampleErr = sampleEdge(ctx, e, t0) })
	var frozen time.Duration
	wg.Go(func() { frozen = freezeHub(ctx, h, t0) })
	wg.Wait()
	b.StopTimer()
	for _, p := range pubs {
		<-p.done
	}
	check(b, sampleErr)
	h.alive(b)
	e.alive(b)
	b.Logf("load over after %s, the hub frozen %s in all; draining", time.Since(t0).Round(time.Second), frozen)

	acked := 0
	for _, p := range pubs {
		acked += len(p.acked)
	}
	drained := drain(b, h, e, int64(acked))
	report(b, pubs, h, samples, d, drained)
}

func body(mid string) []byte {
	s := fmt.Sprintf(`{"id":%q,"t":%d,"pad":"`, mid, time.Now().UnixMilli())
	return []byte(s + strings.Repeat("x", max(0, bodySize-len(s)-2)) + `"}`)
}

// sampleEdge samples the edge every sampleEvery until ctx ends.
func sampleEdge(ctx context.Context, e *edgeProc, t0 time.Time) ([]sample, error) {
	var out []sample
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	for {
		s, err := takeSample(e.pid(), e.dir, time.Since(t0))
		if err != nil {
			return out, err
		}
		s.backlog, s.values[goroutines] = e.backlog()
		out = append(out, s)
		select {
		case <-ctx.Done():
			return out, nil
		case <-tick.C:
		}
	}
}

// freezeHub stops the hub (SIGSTOP) from freezeAt to freezeAt+freeze of
// every cycle until ctx ends, when it lets it run again; it returns how
// long the hub was frozen in all.
func freezeHub(ctx context.Context, h *hubProc, t0 time.Time) time.Duration {
	var total time.Duration
	for c := time.Duration(0); ; c += cycle {
		if !sleepUntil(ctx, t0.Add(c+freezeAt)) {
			return total
		}
		_ = h.cmd.Process.Signal(syscall.SIGSTOP)
		stopped := time.Now()
		sleepUntil(ctx, t0.Add(c+freezeAt+freeze))
		_ = h.cmd.Process.Signal(syscall.SIGCONT)
		total += time.Since(stopped)
		if ctx.Err() != nil {
			return total
		}
	}
}

// sleepUntil sleeps until t or ctx ends; false if ctx ended.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// drain waits until the edge's upstream queues are empty and the hub holds
// at least acked events, and returns how long that took.
func drain(b *testing.B, h *hubProc, e *edgeProc, acked int64) time.Duration {
	t0 := time.Now()
	var depth, events int64
	for deadline := t0.Add(drainLimit); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		var err error
		if depth, _ = e.backlog(); depth != 0 {
			continue
		}
		if events, err = h.eventCount(); err == nil && events >= acked {
			return time.Since(t0)
		}
	}
	b.Fatalf("not drained in %s: %d messages still queued at the edge, %d events at the hub, %d acknowledged", drainLimit, depth, events, acked)
	return 0
}

// backlog is the number of messages in the edge's upstream queues and
// the edge's goroutines, from its local API (-1, 0 when it does not
// answer).
func (e *edgeProc) backlog() (int64, float64) {
	st, err := localapi.FetchStatus(e.ready.API)
	if err != nil {
		return -1, 0
	}
	var n int64
	for _, q := range st.Queues {
		if strings.HasPrefix(q.Name, "$upstream/") {
			n += q.Depth
		}
	}
	return n, float64(st.Goroutines)
}
