package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// stampSize is the bytes of the send time -stamp writes at the start of a
// payload: Unix nanoseconds, big-endian, as broker/bench_test.go's
// BenchmarkModuleToModule writes them. Sender and receiver share the
// machine's clock.
const stampSize = 8

func stamp(payload []byte, t time.Time) {
	binary.BigEndian.PutUint64(payload, uint64(t.UnixNano()))
}

// latency is the time from the send time stamped in payload to now; false
// when the payload is too short to hold one.
func latency(payload []byte, now time.Time) (time.Duration, bool) {
	if len(payload) < stampSize {
		return 0, false
	}
	sent := time.Unix(0, int64(binary.BigEndian.Uint64(payload)))
	return now.Sub(sent), true
}

// receiveReport is the JSON line of a receiving run (-receive). Broker
// figures are null without -pid; broker_us_per_msg is per delivery.
type receiveReport struct {
	Label           string   `json:"label"`
	Filter          string   `json:"filter"`
	QoS             int      `json:"qos"`
	Seconds         float64  `json:"seconds"`
	Delivered       uint64   `json:"delivered"`
	DeliveredPerS   float64  `json:"delivered_per_s"`
	LatencyP50ms    float64  `json:"latency_p50_ms"`
	LatencyP90ms    float64  `json:"latency_p90_ms"`
	LatencyP99ms    float64  `json:"latency_p99_ms"`
	LatencyMaxms    float64  `json:"latency_max_ms"`
	Unstamped       uint64   `json:"unstamped"` // deliveries too short to carry a send time
	Disconnects     uint64   `json:"disconnects"`
	BrokerCPUPct    *float64 `json:"broker_cpu_pct"`
	BrokerUsPerMsg  *float64 `json:"broker_us_per_msg"`
	BrokerRSSMB     *float64 `json:"broker_rss_mb"`
	BrokerRSSPeakMB *float64 `json:"broker_rss_peak_mb"`
}

// receiver counts what one subscription delivers in the window and times
// each delivery from its stamp. paho calls onMessage on one goroutine (the
// order matters); the lock hands the figures to the summary.
type receiver struct {
	*load
	first     chan struct{}
	firstOnce sync.Once

	mu        sync.Mutex
	hist      histogram
	unstamped uint64
}

func (r *receiver) onMessage(_ mqtt.Client, m mqtt.Message) {
	now := time.Now()
	r.firstOnce.Do(func() { close(r.first) })
	if r.phase.Load() != phaseWindow {
		return
	}
	d, ok := latency(m.Payload(), now)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delivered.Add(1)
	if !ok {
		r.unstamped++
		return
	}
	r.hist.record(d)
}

// receive subscribes one client (index -first) to cfg.Receive, creates
// cfg.Ready, and waits for the first delivery: the window starts -warmup
// after it, so that it falls in the publisher's, whenever that started.
// Then it counts deliveries over -duration and reports.
func receive(ctx context.Context, cfg config) (receiveReport, error) {
	cfg.Clients = 1 // the one connection whose loss ends the run
	if err := cfg.validate(); err != nil {
		return receiveReport{}, err
	}
	if cfg.PID > 0 {
		if _, err := readProc(cfg.PID); err != nil {
			return receiveReport{}, fmt.Errorf("broker pid %d: %w", cfg.PID, err)
		}
	}
	r := &receiver{load: &load{cfg: cfg, allLost: make(chan struct{})}, first: make(chan struct{})}
	cli, err := r.subscribe(ctx)
	if err != nil {
		return receiveReport{}, err
	}
	defer r.disconnect(nil, cli)
	if cfg.Ready != "" {
		if err := os.WriteFile(cfg.Ready, []byte("ready\n"), 0o644); err != nil {
			return receiveReport{}, fmt.Errorf("write ready file: %w", err)
		}
	}
	wait := time.NewTimer(cfg.ReceiveWait)
	defer wait.Stop()
	select {
	case <-r.first:
	case <-wait.C:
		return receiveReport{}, fmt.Errorf("nothing delivered on %q within %s of subscribing", cfg.Receive, cfg.ReceiveWait)
	case <-r.allLost:
		return receiveReport{}, errors.New("the receiver lost its connection before the first delivery")
	case <-ctx.Done():
		return receiveReport{}, errInterrupted
	}
	w, err := r.measure(ctx)
	return r.summarize(w), err
}

func (r *receiver) subscribe(ctx context.Context) (mqtt.Client, error) {
	tlsConf, err := tlsConfig(r.cfg.CAFile)
	if err != nil {
		return nil, err
	}
	id, err := r.cfg.identity(ctx, r.cfg.First)
	if err != nil {
		return nil, err
	}
	o := r.cfg.clientOptions(id, tlsConf, func(mqtt.Client, error) { r.connectionLost() })
	o.SetOrderMatters(true)
	cli := mqtt.NewClient(o)
	if err := wait(cli.Connect()); err != nil {
		return nil, fmt.Errorf("connect receiver %s to %s: %w", id.clientID, r.cfg.Broker, err)
	}
	if err := wait(cli.Subscribe(r.cfg.Receive, byte(r.cfg.QoS), r.onMessage)); err != nil {
		cli.Disconnect(0)
		return nil, fmt.Errorf("subscribe %s to %q: %w", id.clientID, r.cfg.Receive, err)
	}
	return cli, nil
}

func (r *receiver) summarize(w window) receiveReport {
	c := r.cfg
	rep := receiveReport{Label: c.Label, Filter: c.Receive, QoS: c.QoS, Disconnects: r.disconnects.Load()}
	secs := w.end.Sub(w.start).Seconds()
	if secs <= 0 {
		return rep
	}
	r.mu.Lock()
	h, n := r.hist, r.delivered.Load()
	rep.Unstamped = r.unstamped
	r.mu.Unlock()
	rep.Seconds = round(secs, 3)
	rep.Delivered = n
	rep.DeliveredPerS = round(float64(n)/secs, 1)
	ms := func(q float64) float64 { return round(float64(h.quantile(q))/1e6, 3) }
	rep.LatencyP50ms, rep.LatencyP90ms, rep.LatencyP99ms = ms(0.50), ms(0.90), ms(0.99)
	rep.LatencyMaxms = round(float64(h.max)/1e6, 3)
	if c.PID <= 0 || w.procErr != nil {
		return rep
	}
	cpu := (w.after.cpu() - w.before.cpu()).Seconds()
	rep.BrokerCPUPct = ptr(round(100*cpu/secs, 1))
	if n > 0 {
		rep.BrokerUsPerMsg = ptr(round(cpu*1e6/float64(n), 2))
	}
	mb := func(kb uint64) *float64 { return ptr(round(float64(kb)/1024, 1)) }
	rep.BrokerRSSMB = mb(w.after.rssKB)
	rep.BrokerRSSPeakMB = mb(max(w.before.rssKB, w.peakKB, w.after.rssKB))
	return rep
}

func receiveSummary(r receiveReport) string {
	s := fmt.Sprintf("%s: receive %q qos%d", r.Label, r.Filter, r.QoS)
	if r.Label == "" {
		s = s[2:]
	}
	s += fmt.Sprintf(": %.0f msg/s (%d delivered in %.1fs), latency p50 %.2f p90 %.2f p99 %.2f max %.1f ms",
		r.DeliveredPerS, r.Delivered, r.Seconds, r.LatencyP50ms, r.LatencyP90ms, r.LatencyP99ms, r.LatencyMaxms)
	if r.Unstamped > 0 {
		s += fmt.Sprintf(", %d without a send time", r.Unstamped)
	}
	if r.Disconnects > 0 {
		s += fmt.Sprintf(" (%d disconnects)", r.Disconnects)
	}
	return s + brokerSummary(r.BrokerCPUPct, r.BrokerUsPerMsg, r.BrokerRSSMB, r.BrokerRSSPeakMB)
}
