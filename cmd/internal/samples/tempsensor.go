package samples

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/broker/client"
)

// Reading is one message of the temperature sensor.
type Reading struct {
	Machine     Machine `json:"machine"`
	Ambient     Ambient `json:"ambient"`
	TimeCreated string  `json:"timeCreated"` // RFC 3339, UTC
}

// Machine is the simulated machine's state.
type Machine struct {
	Temperature float64 `json:"temperature"`
	Pressure    float64 `json:"pressure"`
}

// Ambient is the simulated room's state.
type Ambient struct {
	Temperature float64 `json:"temperature"`
	Humidity    float64 `json:"humidity"`
}

// Sequence yields the machine temperatures: MachineTempMin, then up by
// MachineTempStep per message while not above MachineTempMax, then from
// MachineTempMin again. Values are computed from a counter, not summed,
// so a step of 0.1 does not drift.
type Sequence struct {
	k int64 // steps taken since the last restart at the minimum
}

// Next returns the next temperature under settings s (which may change
// between calls: the sequence stays within the current bounds).
func (q *Sequence) Next(s SensorSettings) float64 {
	t := s.MachineTempMin + float64(q.k)*s.MachineTempStep
	if t > s.MachineTempMax+1e-9 {
		q.k, t = 0, s.MachineTempMin
	}
	q.k++
	return round(t, 6)
}

// NewReading makes message n (from 0) of a sensor whose machine is at
// temperature t: pressure follows the temperature linearly from 1 to 10
// across the configured range, the ambient values drift slowly.
func NewReading(n int64, t float64, s SensorSettings, now time.Time) Reading {
	span := s.MachineTempMax - s.MachineTempMin
	p := 1.0
	if span > 0 {
		p = 1 + 9*(t-s.MachineTempMin)/span
	}
	x := float64(n)
	return Reading{
		Machine:     Machine{Temperature: t, Pressure: round(p, 2)},
		Ambient:     Ambient{Temperature: round(21+0.5*math.Sin(x/10), 2), Humidity: round(25+2*math.Sin(x/20), 2)},
		TimeCreated: now.UTC().Format(time.RFC3339),
	}
}

func round(f float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(f*p) / p
}

// SensorOptions configure RunTempSensor.
type SensorOptions struct {
	Logger *slog.Logger
	Output string           // default "temperatureOutput"
	Now    func() time.Time // default time.Now
}

// RunTempSensor is the simulated temperature sensor on an unconnected
// client: it takes its settings from the module twin (reporting back what
// it applied), connects, and sends a Reading to its output every
// SendInterval until ctx is done, which is a clean stop (nil). The caller
// closes the client.
func RunTempSensor(ctx context.Context, c *client.Client, opts SensorOptions) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Output == "" {
		opts.Output = "temperatureOutput"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &sensor{c: c, ctx: ctx, opts: opts, log: opts.Logger, settings: DefaultSensorSettings(),
		changed: make(chan struct{}, 1), runID: runID()}
	c.OnDesired(s.desired)
	if err := c.Connect(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	s.log.Info("temperature sensor started", "output", opts.Output)
	return s.loop(ctx)
}

type sensor struct {
	c     *client.Client
	ctx   context.Context
	opts  SensorOptions
	log   *slog.Logger
	runID string

	mu       sync.Mutex
	settings SensorSettings
	changed  chan struct{}

	// owned by loop
	seq  Sequence
	sent int64
	idle bool
}

func (s *sensor) current() SensorSettings {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.settings
}

// desired applies a desired-properties change and reports the outcome.
func (s *sensor) desired(d map[string]any, version int64) {
	s.mu.Lock()
	prev := s.settings
	next, err := prev.Apply(d)
	s.settings = next
	s.mu.Unlock()
	if err != nil {
		s.log.Warn("desired properties refused; previous values kept", "version", version, "err", err)
	}
	if next != prev {
		s.log.Info("settings applied", "version", version, "send_interval_s", next.SendInterval, "send_data", next.SendData,
			"machine_temp_min", next.MachineTempMin, "machine_temp_max", next.MachineTempMax,
			"machine_temp_step", next.MachineTempStep, "max_messages", next.MaxMessages)
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}
	report(s.ctx, s.c, s.log, next.Reported(), err)
}

func (s *sensor) loop(ctx context.Context) error {
	timer := time.NewTimer(interval(s.current()))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			s.log.Info("temperature sensor stopping", "messages_sent", s.sent)
			return nil
		case <-s.changed:
			s.idle = false
			timer.Reset(interval(s.current()))
		case <-timer.C:
			s.tick(ctx)
			timer.Reset(interval(s.current()))
		}
	}
}

func interval(s SensorSettings) time.Duration {
	return time.Duration(s.SendInterval * float64(time.Second))
}

// tick sends one reading if the settings allow it.
func (s *sensor) tick(ctx context.Context) {
	st := s.current()
	if !st.SendData {
		return
	}
	if st.MaxMessages > 0 && s.sent >= st.MaxMessages {
		if !s.idle {
			s.idle = true
			s.log.Info("MaxMessages reached; idle until it changes", "messages_sent", s.sent)
		}
		return
	}
	r := NewReading(s.sent, s.seq.Next(st), st, s.opts.Now())
	body, _ := json.Marshal(r) // plain structs of floats and a string: cannot fail
	m := client.Message{
		Body: body, MessageID: s.runID + "-" + strconv.FormatInt(s.sent+1, 10),
		ContentType: "application/json", ContentEncoding: "utf-8",
		Properties: map[string]string{"sequenceNumber": strconv.FormatInt(s.sent+1, 10)},
	}
	if s.send(ctx, m) {
		s.sent++
	}
}

// send delivers m, again with the same $.mid after a lost connection (the
// first copy may have been stored: the hub keeps both, as IoT Hub does; a
// back end may de-duplicate by message id).
func (s *sensor) send(ctx context.Context, m client.Message) bool {
	for {
		err := s.c.SendOutput(ctx, s.opts.Output, m)
		switch {
		case err == nil:
			return true
		case ctx.Err() != nil:
			return false
		case errors.Is(err, client.ErrConnectionLost):
			continue
		}
		s.log.Warn("reading not sent", "err", err)
		return false
	}
}

// runID makes message ids unique across restarts of the module.
func runID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// report writes properties and lastError (null when err is nil) to the
// reported properties; a failure is logged, as the next report carries the
// current values again.
func report(ctx context.Context, c *client.Client, log *slog.Logger, props map[string]any, err error) {
	props["lastError"] = nil
	if err != nil {
		props["lastError"] = err.Error()
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, perr := c.PatchReported(ctx, props); perr != nil && ctx.Err() == nil {
		log.Warn("reported properties not written", "err", fmt.Sprint(perr))
	}
}
