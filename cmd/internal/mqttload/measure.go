package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"time"
)

var (
	errInterrupted = errors.New("interrupted during the warm-up")
	errAllLost     = errors.New("every publisher lost its connection")
)

// publish is one of a client's Inflight publishing goroutines: publish, wait
// for the ack, time it, again. With -rate the client's messages take evenly
// spaced slots of the total rate (client ci has slots ci, ci+Clients, …),
// counted from the start of the warm-up, whichever goroutine is free.
func (l *load) publish(ci int, p *publisher, seq *atomic.Int64, st *stats) {
	qos := byte(l.cfg.QoS)
	payload := l.payload
	if l.cfg.Stamp { // a payload of its own: paho has written it once the ack is in
		payload = slices.Clone(l.payload)
	}
	var pace *time.Timer
	if l.cfg.Rate > 0 {
		pace = time.NewTimer(time.Hour)
		defer pace.Stop()
	}
	for {
		if pace != nil {
			slot := float64(seq.Add(1)-1)*float64(l.cfg.Clients) + float64(ci)
			due := l.start.Add(time.Duration(slot / l.cfg.Rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				pace.Reset(d)
				select {
				case <-pace.C:
				case <-l.stop:
					return
				}
			}
		}
		select {
		case <-l.stop:
			return
		default:
		}
		if p.lost.Load() {
			return
		}
		t0 := time.Now()
		if l.cfg.Stamp {
			stamp(payload, t0)
		}
		tok := p.cli.Publish(p.topic, qos, false, payload)
		select {
		case <-tok.Done():
		case <-l.drained:
			st.unacked++
			return
		}
		now := time.Now()
		if tok.Error() != nil {
			st.errors++
			if !p.cli.IsConnectionOpen() {
				return
			}
			if l.cfg.Stamp { // paho may still hold the failed one
				payload = slices.Clone(l.payload)
			}
			continue
		}
		if l.phase.Load() == phaseWindow {
			st.hist.record(now.Sub(t0))
			st.acked++
		}
	}
}

// window is what measure saw of the measured window and the broker.
type window struct {
	start, end    time.Time
	before, after procSample
	peakKB        uint64
	procErr       error
}

// measure waits out the warm-up, opens the window, samples the broker at
// both ends and every 100 ms in between, and closes the window. An
// interruption (ctx) during the window ends it early without error.
func (l *load) measure(ctx context.Context) (window, error) {
	var w window
	if err := l.sleep(ctx, l.cfg.Warmup); err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			err = errInterrupted
		}
		return w, err
	}
	var sampler *rssSampler
	if l.cfg.PID > 0 {
		w.before, w.procErr = readProc(l.cfg.PID)
		sampler = startRSSSampler(l.cfg.PID, 100*time.Millisecond)
	}
	w.start = time.Now()
	l.phase.Store(phaseWindow)
	err := l.sleep(ctx, l.cfg.Duration)
	l.phase.Store(phaseDrain)
	w.end = time.Now()
	if sampler != nil {
		var after, peak error
		w.after, after = readProc(l.cfg.PID)
		w.peakKB, peak = sampler.Stop()
		w.procErr = errors.Join(w.procErr, after, peak)
	}
	if errors.Is(err, errAllLost) {
		return w, err
	}
	if w.procErr != nil {
		return w, fmt.Errorf("broker pid %d: %w", l.cfg.PID, w.procErr)
	}
	return w, nil
}

func (l *load) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-l.allLost:
		return errAllLost
	}
}

// summarize merges the goroutines' stats with the window into the report.
func (l *load) summarize(w window, all []*stats) report {
	c := l.cfg
	rep := report{Label: c.Label, Clients: c.Clients, QoS: c.QoS, Inflight: c.Inflight, Size: c.Size, Rate: c.Rate}
	var h histogram
	for _, st := range all {
		h.merge(&st.hist)
		rep.Acked += st.acked
		rep.Errors += st.errors + st.unacked
	}
	rep.Disconnects = l.disconnects.Load()
	rep.Errors += rep.Disconnects
	secs := w.end.Sub(w.start).Seconds()
	if secs <= 0 {
		return rep
	}
	rep.Seconds = round(secs, 3)
	rep.MsgsPerS = round(float64(rep.Acked)/secs, 1)
	ms := func(q float64) float64 { return round(float64(h.quantile(q))/1e6, 3) }
	rep.PubackP50ms, rep.PubackP90ms, rep.PubackP99ms = ms(0.50), ms(0.90), ms(0.99)
	rep.PubackMaxms = round(float64(h.max)/1e6, 3)
	if c.Subscribe != "" {
		rep.Delivered = ptr(l.delivered.Load())
	}
	if c.PID <= 0 || w.procErr != nil {
		return rep
	}
	cpu := (w.after.cpu() - w.before.cpu()).Seconds()
	rep.BrokerCPUPct = ptr(round(100*cpu/secs, 1))
	if rep.Acked > 0 {
		rep.BrokerUsPerMsg = ptr(round(cpu*1e6/float64(rep.Acked), 2))
	}
	mb := func(kb uint64) *float64 { return ptr(round(float64(kb)/1024, 1)) }
	rep.BrokerRSSMB = mb(w.after.rssKB)
	rep.BrokerRSSPeakMB = mb(max(w.before.rssKB, w.peakKB, w.after.rssKB))
	rep.BrokerHWMMB = mb(w.after.hwmKB)
	return rep
}

func round(v float64, digits int) float64 {
	p := math.Pow10(digits)
	return math.Round(v*p) / p
}

func ptr[T any](v T) *T { return &v }
