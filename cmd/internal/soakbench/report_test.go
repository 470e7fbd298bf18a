package soakbench

import (
	"testing"
	"time"
)

// tally is what the hub's event log holds of the publishers' messages.
type tally struct {
	sent, acked, atHub, dups, missing, foreign, pubErrors int64
}

// count reads the hub's whole log and checks it against what the
// publishers sent and had acknowledged: every acknowledged message there
// once, no message twice, nothing else.
func count(b *testing.B, pubs []*publisher, h *hubProc) tally {
	var t tally
	index := map[string]int{}
	seen := make([][]uint8, len(pubs))
	for i, p := range pubs {
		index[p.id] = i
		seen[i] = make([]uint8, p.sent.Load())
	}
	err := h.events(func(ev event) {
		dev, n, ok := parseMid(ev.MessageID)
		i, ours := index[dev]
		if !ok || !ours || dev != ev.DeviceID || int(n) >= len(seen[i]) {
			if t.foreign++; t.foreign <= 5 {
				b.Logf("an event the publishers did not send: seq %d device %q message id %q", ev.Seq, ev.DeviceID, ev.MessageID)
			}
			return
		}
		if seen[i][n] < 255 {
			seen[i][n]++
		}
	})
	check(b, err)
	for i, p := range pubs {
		t.sent += p.sent.Load()
		t.acked += int64(len(p.acked))
		t.pubErrors += p.errors.Load()
		for _, n := range p.acked {
			if seen[i][n] == 0 {
				if t.missing++; t.missing <= 5 {
					b.Logf("acknowledged by the edge, not at the hub: %s-%d", p.id, n)
				}
			}
		}
		for n, c := range seen[i] {
			if c > 0 {
				t.atHub++
			}
			if c > 1 {
				if t.dups++; t.dups <= 5 {
					b.Logf("at the hub %d times: %s-%d", c, p.id, n)
				}
			}
		}
	}
	return t
}

// report checks the hub's log and reports the figures; the benchmark fails
// when an acknowledged message is missing, any is there twice, or the
// load did not run as planned.
func report(b *testing.B, pubs []*publisher, h *hubProc, samples []sample, d, drained time.Duration) {
	t := count(b, pubs, h)
	warmup := warmupOf(d)
	tr, cycles := trends(samples, warmup, cycle, d)
	b.Logf("%d samples, warm-up %s, %d whole cycles fitted", len(samples), warmup, cycles)
	for k, name := range seriesNames {
		b.Logf("%s, mean of each minute after warm-up: %.1f", name, tr[k].perCycle)
		b.ReportMetric(tr[k].mean, name)
		b.ReportMetric(tr[k].perHour, slopeName(name))
	}
	var peak int64
	var blocked int64
	for _, s := range samples {
		peak = max(peak, s.backlog)
	}
	for _, p := range pubs {
		blocked += p.blocked.Load()
	}
	b.ReportMetric(float64(peak), "peak_backlog")
	b.ReportMetric(drained.Seconds(), "drain_s")
	b.ReportMetric(float64(t.sent), "sent")
	b.ReportMetric(float64(t.acked), "acked")
	b.ReportMetric(float64(t.atHub), "at_hub")
	b.ReportMetric(float64(t.dups), "duplicates")
	b.ReportMetric(float64(t.missing), "missing")
	if t.missing > 0 || t.dups > 0 || t.foreign > 0 {
		b.Fatalf("the hub's log: %d acknowledged messages missing, %d messages more than once, %d events not sent", t.missing, t.dups, t.foreign)
	}
	if t.pubErrors > 0 || t.acked == 0 {
		b.Fatalf("the load did not run as planned: %d publishes failed or were not acknowledged, %d acknowledged", t.pubErrors, t.acked)
	}
	if blocked > 0 {
		b.Logf("%d publishes waited for one of the %d inflight slots: the edge acknowledged slower than the load", blocked, inflight)
	}
}
