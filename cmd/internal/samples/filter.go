package samples

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/broker/client"
)

// ErrNotReading: a message the filter cannot read as a Reading.
var ErrNotReading = errors.New("not a temperature reading (want JSON with machine.temperature)")

// Check reads a message body as a Reading and tells whether it passes a
// filter at threshold: its machine temperature is strictly above it.
func Check(body []byte, threshold float64) (pass bool, temperature float64, err error) {
	var r struct {
		Machine *struct {
			Temperature *float64 `json:"temperature"`
		} `json:"machine"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return false, 0, fmt.Errorf("%w: %v", ErrNotReading, err)
	}
	if r.Machine == nil || r.Machine.Temperature == nil {
		return false, 0, fmt.Errorf("%w: no machine.temperature", ErrNotReading)
	}
	t := *r.Machine.Temperature
	return t > threshold, t, nil
}

// FilterOptions configure RunFilter.
type FilterOptions struct {
	Logger *slog.Logger
	Input  string // default "input1"
	Output string // default "output1"
	// ReportInterval is how often changed counters are written to the
	// reported properties; default 30 s.
	ReportInterval time.Duration
	// SendTimeout bounds forwarding one reading; default 30 s.
	SendTimeout time.Duration
}

// RunFilter is the filter module on an unconnected client: readings on
// its input whose machine temperature is above TemperatureThreshold
// (module twin, desired; default 25) go to its output with the property
// MessageType=Alert, the others are dropped; messages that are not
// readings are counted and dropped. Counters go to the reported
// properties every ReportInterval when they changed, and once more when
// ctx ends, which is a clean stop (nil). The caller closes the client.
func RunFilter(ctx context.Context, c *client.Client, opts FilterOptions) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Input == "" {
		opts.Input = "input1"
	}
	if opts.Output == "" {
		opts.Output = "output1"
	}
	if opts.ReportInterval <= 0 {
		opts.ReportInterval = 30 * time.Second
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = 30 * time.Second
	}
	f := &filter{c: c, ctx: ctx, opts: opts, log: opts.Logger, settings: DefaultFilterSettings()}
	c.OnDesired(f.desired)
	c.OnInput(opts.Input, f.input)
	if err := c.Connect(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	f.log.Info("filter started", "input", opts.Input, "output", opts.Output, "threshold", f.threshold())
	t := time.NewTicker(opts.ReportInterval)
	defer t.Stop()
	var last Counts
	for {
		select {
		case <-t.C:
			last = f.reportCounts(ctx, last)
		case <-ctx.Done():
			// A last report on the way out; the connection is still up.
			final, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			f.reportCounts(final, last)
			cancel()
			n := f.counts()
			f.log.Info("filter stopping", "forwarded", n.Forwarded, "dropped", n.Dropped, "invalid", n.Invalid)
			return nil
		}
	}
}

// Counts are the filter's counters since it started.
type Counts struct {
	Forwarded, Dropped, Invalid int64
}

type filter struct {
	c    *client.Client
	ctx  context.Context
	opts FilterOptions
	log  *slog.Logger

	mu       sync.Mutex
	settings FilterSettings

	forwarded, dropped, invalid atomic.Int64
	invalidLog                  rateLimit
}

func (f *filter) threshold() float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.settings.TemperatureThreshold
}

func (f *filter) counts() Counts {
	return Counts{Forwarded: f.forwarded.Load(), Dropped: f.dropped.Load(), Invalid: f.invalid.Load()}
}

func (f *filter) desired(d map[string]any, version int64) {
	f.mu.Lock()
	prev := f.settings
	next, err := prev.Apply(d)
	f.settings = next
	f.mu.Unlock()
	if err != nil {
		f.log.Warn("desired properties refused; previous values kept", "version", version, "err", err)
	}
	if next != prev {
		f.log.Info("settings applied", "version", version, "threshold", next.TemperatureThreshold)
	}
	report(f.ctx, f.c, f.log, map[string]any{"TemperatureThreshold": next.TemperatureThreshold}, err)
}

// input handles one message; the client acknowledges it when this returns.
func (f *filter) input(m client.Message) {
	pass, _, err := Check(m.Body, f.threshold())
	switch {
	case err != nil:
		n := f.invalid.Add(1)
		if f.invalidLog.allow(time.Now(), time.Minute) {
			f.log.Warn("input is not a reading; dropped (logged once a minute at most)", "invalid_total", n, "message_id", m.MessageID, "err", err)
		}
		return
	case !pass:
		f.dropped.Add(1)
		return
	}
	props := maps.Clone(m.Properties)
	if props == nil {
		props = map[string]string{}
	}
	props["MessageType"] = "Alert"
	out := client.Message{Body: m.Body, Properties: props, MessageID: m.MessageID, CorrelationID: m.CorrelationID,
		ContentType: m.ContentType, ContentEncoding: m.ContentEncoding}
	// Not the run context: on shutdown the forward finishes before the
	// input is acknowledged. If the connection drops, the input's
	// acknowledgement is lost with it and the input comes again.
	ctx, cancel := context.WithTimeout(context.Background(), f.opts.SendTimeout)
	defer cancel()
	if err := f.c.SendOutput(ctx, f.opts.Output, out); err != nil {
		if !errors.Is(err, client.ErrConnectionLost) {
			f.log.Warn("alert not forwarded", "message_id", m.MessageID, "err", err)
		}
		return
	}
	f.forwarded.Add(1)
}

// reportCounts writes the counters if they changed since last and
// returns what it wrote (last again on failure).
func (f *filter) reportCounts(ctx context.Context, last Counts) Counts {
	n := f.counts()
	if n == last {
		return last
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := f.c.PatchReported(ctx, map[string]any{"forwarded": n.Forwarded, "dropped": n.Dropped, "invalid": n.Invalid})
	if err != nil {
		return last
	}
	return n
}

// rateLimit lets one event through per period.
type rateLimit struct {
	mu   sync.Mutex
	next time.Time
}

func (r *rateLimit) allow(now time.Time, period time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Before(r.next) {
		return false
	}
	r.next = now.Add(period)
	return true
}
