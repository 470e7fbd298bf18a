package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/broker/client"
)

// Interval of a device's telemetry: intervalMs in its desired properties,
// within these bounds.
const (
	defaultInterval = 200 * time.Millisecond
	minInterval     = 20 * time.Millisecond
	maxInterval     = 10 * time.Second
)

// device is a simulated leaf device behind the edge: it publishes
// telemetry with message ids the tally knows, and follows its twin's
// desired properties, reporting back what it received (reported.received).
type device struct {
	id, run string
	c       *client.Client
	tally   *Tally
	log     *slog.Logger

	interval   atomic.Int64 // nanoseconds between messages
	publishing atomic.Bool
	changed    chan struct{} // the interval changed
}

// connectDevice connects leaf device cs to the edge's MQTT listener
// mqttAddr, retrying refusals until ctx ends: the edge learns of its leaf
// devices from the hub over the link, so on a first run it may refuse them
// for a moment.
func connectDevice(ctx context.Context, cs, mqttAddr, run string, tally *Tally, log *slog.Logger) (*device, error) {
	for {
		c, err := client.FromConnectionString(cs, client.WithBroker("tcp://"+mqttAddr), client.WithLogger(log),
			client.WithBackoff(100*time.Millisecond, time.Second))
		if err != nil {
			return nil, err
		}
		d := &device{id: c.DeviceID(), run: run, c: c, tally: tally, log: log.With("device", c.DeviceID()),
			changed: make(chan struct{}, 1)}
		d.interval.Store(int64(defaultInterval))
		d.publishing.Store(true)
		c.OnDesired(d.desired)
		err = c.Connect(ctx)
		if err == nil {
			return d, nil
		}
		c.Close()
		if !errors.Is(err, client.ErrRefused) || ctx.Err() != nil {
			return nil, fmt.Errorf("leaf device %s: connect to the edge: %w", d.id, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("leaf device %s: the edge still refuses it: %w", d.id, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// desired follows a desired-properties change (a patch, or all of them on
// connecting): intervalMs sets the telemetry interval, and everything
// received is reported back under reported.received.
func (d *device) desired(patch map[string]any, _ int64) {
	delete(patch, "$version")
	if ms, ok := patch["intervalMs"].(float64); ok && !math.IsNaN(ms) {
		iv := min(max(time.Duration(ms)*time.Millisecond, minInterval), maxInterval)
		if d.interval.Swap(int64(iv)) != int64(iv) {
			select {
			case d.changed <- struct{}{}:
			default:
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.c.PatchReported(ctx, map[string]any{receivedKey: patch}); err != nil {
		d.log.Warn("report the desired properties received", "err", err)
	}
}

// report merges props into the device's reported properties (at the
// edge, which is where a device writes its twin, online or not).
func (d *device) report(ctx context.Context, props map[string]any) error {
	if _, err := d.c.PatchReported(ctx, props); err != nil {
		return fmt.Errorf("leaf device %s: %w", d.id, err)
	}
	return nil
}

// publish sends telemetry every interval until ctx ends, while publishing
// is set. Each message's id is <run>.<device>.<n>.
func (d *device) publish(ctx context.Context) {
	t := time.NewTicker(time.Duration(d.interval.Load()))
	defer t.Stop()
	for n := 1; ; {
		select {
		case <-ctx.Done():
			return
		case <-d.changed:
			t.Reset(time.Duration(d.interval.Load()))
			continue
		case <-t.C:
		}
		if !d.publishing.Load() {
			continue
		}
		id := fmt.Sprintf("%s.%s.%d", d.run, d.id, n)
		n++
		body, _ := json.Marshal(map[string]any{"device": d.id, "n": n - 1, "temperature": 20 + 5*math.Sin(float64(n)/20)})
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := d.c.SendEvent(sctx, client.Message{Body: body, MessageID: id, ContentType: "application/json", ContentEncoding: "utf-8"})
		cancel()
		if err != nil {
			d.tally.Unsure(id)
			if ctx.Err() == nil {
				d.log.Warn("publish failed; not counted as sent", "message_id", id, "err", err)
			}
			continue
		}
		d.tally.Sent(id, time.Now())
	}
}
