// Package wallclock is the edge's estimate of the time of day on a gateway
// whose wall clock may be wrong: one without a battery-backed clock boots at
// 1970 (or, with a bad one, years ahead) and sets its clock later from NTP,
// possibly after days offline.
//
// The estimate is used wherever the time of day matters to a decision: SAS
// token expiry for devices, the edge's own token for the hub, message
// timestamps and twin HLC stamps. It comes from, in order:
//
//  1. the hub's clock, once a link exchange told it (Confirm), carried on
//     by the monotonic clock — a later wall-clock jump does not move it;
//  2. the wall clock, when it is plausible;
//  3. the floor: the last time known good (persisted every SaveEvery and at
//     Close) plus the monotonic time since Open. It is a lower bound of the
//     true time: it never runs ahead of it.
//
// The wall clock is implausible when it is behind the floor, or — on an
// edge with a hub (HubConfirms) — more than MaxJump ahead of a floor the
// hub confirmed. While it is implausible the floor stands in and a warning
// is logged (once per change of state). On an edge with a hub the floor
// advances only from the hub's time and the monotonic clock, so a wall
// clock that ran ahead and was set back never leaves the floor in the
// future; a standalone edge has only its wall clock and follows it. The
// cost of the floor: while it stands in, a token that expired between the
// floor and the true time is still accepted — late, never early, as queue
// expiry.
//
// Open starts one goroutine (the periodic save), stopped by Close.
package wallclock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/kv"
)

// Skew is how far the wall clock may be behind the floor, or away from the
// hub's clock, and still count as right (the SAS skew).
const Skew = 5 * time.Minute

// MinTrusted is the floor of an edge that never ran before: no gateway's
// true time is before it.
var MinTrusted = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Options tune the clock. Zero values take the defaults.
type Options struct {
	Logger *slog.Logger
	// Now is the system wall clock (default time.Now); Mono a monotonic
	// reading of any origin (default: time since the package loaded).
	Now  func() time.Time
	Mono func() time.Duration
	// MaxJump: a wall clock further ahead of a hub-confirmed floor than
	// this is implausible (default 30 days). Only with HubConfirms.
	MaxJump time.Duration
	// HubConfirms: a hub will confirm the time (Confirm). The floor then
	// follows only the hub, and a wall clock MaxJump ahead is implausible.
	// A standalone edge has nothing but its wall clock and follows it.
	HubConfirms bool
	// SaveEvery is how often the floor is persisted (default 1 minute).
	SaveEvery time.Duration
}

var loaded = time.Now()

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Mono == nil {
		o.Mono = func() time.Duration { return time.Since(loaded) }
	}
	if o.MaxJump <= 0 {
		o.MaxJump = 30 * 24 * time.Hour
	}
	if o.SaveEvery <= 0 {
		o.SaveEvery = time.Minute
	}
}

// Source names where the estimate comes from.
type Source string

// Sources of the estimate.
const (
	Wall  Source = "wall"
	Hub   Source = "hub"
	Floor Source = "floor"
)

// State is the clock as `edge status` shows it.
type State struct {
	Source    Source    `json:"source"`
	Estimate  time.Time `json:"estimate"`
	Wall      time.Time `json:"wall"`
	Plausible bool      `json:"plausible"`
	// Reason says why the wall clock is not used (empty when it is).
	Reason string `json:"reason,omitempty"`
}

// record is the persisted floor.
type record struct {
	FloorMs int64 `cbor:"1,keyasint"`
}

var key = []byte{kv.PrefixMeta, 'w', 'c'}

// Clock is the estimate; safe for concurrent use.
type Clock struct {
	db   *kv.DB
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	floor     time.Time     // lower bound at mono0
	mono0     time.Duration // Mono() when floor was set
	known     bool          // the floor was observed (hub, or a standalone edge's wall), not MinTrusted
	hub       time.Time     // hub time at monoHub (zero: not confirmed)
	monoHub   time.Duration
	lastState State
	saved     int64 // floor ms last written

	stop chan struct{}
	done chan struct{}
}

// Open reads the persisted floor from db and starts the periodic save.
func Open(ctx context.Context, db *kv.DB, opts Options) (*Clock, error) {
	opts.setDefaults()
	c := &Clock{db: db, opts: opts, log: opts.Logger, floor: MinTrusted, mono0: opts.Mono(),
		stop: make(chan struct{}), done: make(chan struct{})}
	var r record
	err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return kv.Unmarshal(v, &r) })
	})
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
	case err != nil:
		return nil, fmt.Errorf("read the clock floor: %w", err)
	case r.FloorMs > MinTrusted.UnixMilli():
		c.floor, c.known, c.saved = time.UnixMilli(r.FloorMs).UTC(), true, r.FloorMs
	}
	c.mu.Lock()
	c.lastState = c.stateLocked()
	st := c.lastState
	c.mu.Unlock()
	c.report(State{Plausible: true}, st)
	go c.run()
	return c, nil
}

// Close saves the floor and stops the goroutine.
func (c *Clock) Close() error {
	select {
	case <-c.stop:
		return nil
	default:
	}
	close(c.stop)
	<-c.done
	return c.save(context.Background())
}

func (c *Clock) run() {
	defer close(c.done)
	t := time.NewTicker(c.opts.SaveEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.State() // logs a change of state
		if err := c.save(context.Background()); err != nil {
			c.log.Warn("save the clock floor", "err", err)
		}
	}
}

// Now is the best estimate of the true time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stateLocked().Estimate
}

// State returns the estimate and where it comes from, and logs a change.
func (c *Clock) State() State {
	c.mu.Lock()
	st := c.stateLocked()
	prev := c.lastState
	c.lastState = st
	c.mu.Unlock()
	c.report(prev, st)
	return st
}

// Confirm records the hub's clock as read by a link exchange; the estimate
// follows it from now on.
func (c *Clock) Confirm(hub time.Time) {
	if hub.Before(MinTrusted) {
		return // a hub without a clock confirms nothing
	}
	c.mu.Lock()
	c.hub, c.monoHub = hub.Round(0), c.opts.Mono()
	c.raiseFloorLocked(c.hub, c.monoHub)
	c.known = true
	c.mu.Unlock()
	c.State()
}

func (c *Clock) stateLocked() State {
	mono := c.opts.Mono()
	wall := c.opts.Now().Round(0)
	lo := c.floor.Add(max(mono-c.mono0, 0))
	st := State{Wall: wall}
	switch {
	case !c.hub.IsZero():
		st.Source, st.Estimate = Hub, c.hub.Add(max(mono-c.monoHub, 0))
		if d := wall.Sub(st.Estimate); d > Skew || d < -Skew {
			st.Reason = fmt.Sprintf("the wall clock is %s off the hub's", d.Round(time.Second))
		}
	case wall.Before(lo.Add(-Skew)):
		st.Source, st.Estimate = Floor, lo
		st.Reason = fmt.Sprintf("the wall clock (%s) is behind the last time known good (%s)", wall.Format(time.RFC3339), lo.Format(time.RFC3339))
	case c.opts.HubConfirms && c.known && wall.After(lo.Add(c.opts.MaxJump)):
		st.Source, st.Estimate = Floor, lo
		st.Reason = fmt.Sprintf("the wall clock (%s) is more than %s ahead of the last time known good (%s); waiting for the hub to confirm it",
			wall.Format(time.RFC3339), c.opts.MaxJump, lo.Format(time.RFC3339))
	default:
		st.Source, st.Estimate = Wall, wall
		if !c.opts.HubConfirms {
			c.raiseFloorLocked(wall, mono)
			c.known = true
		}
	}
	st.Plausible = st.Reason == ""
	st.Estimate = st.Estimate.UTC()
	return st
}

// raiseFloorLocked moves the floor up to t (read at mono), never down.
func (c *Clock) raiseFloorLocked(t time.Time, mono time.Duration) {
	if lo := c.floor.Add(max(mono-c.mono0, 0)); t.After(lo) {
		c.floor, c.mono0 = t, mono
	}
}

func (c *Clock) report(prev, st State) {
	switch {
	case !st.Plausible && (prev.Plausible || prev.Source != st.Source):
		c.log.Warn("wall clock implausible; using the "+string(st.Source)+" time", "reason", st.Reason,
			"wall", st.Wall.Format(time.RFC3339), "estimate", st.Estimate.Format(time.RFC3339))
	case st.Plausible && !prev.Plausible:
		c.log.Info("wall clock plausible again", "wall", st.Wall.Format(time.RFC3339), "source", string(st.Source))
	}
}

// save persists the floor if it moved.
func (c *Clock) save(ctx context.Context) error {
	c.mu.Lock()
	c.stateLocked() // a standalone edge's floor follows a plausible wall clock
	if !c.known {
		c.mu.Unlock()
		return nil // MinTrusted plus uptime is no observation: an ahead check against it would be wrong
	}
	ms := c.floor.Add(max(c.opts.Mono()-c.mono0, 0)).UnixMilli()
	if ms <= c.saved {
		c.mu.Unlock()
		return nil
	}
	c.saved = ms
	c.mu.Unlock()
	v, err := kv.Marshal(&record{FloorMs: ms})
	if err != nil {
		return err
	}
	return c.db.Commit(ctx, kv.Set(key, v))
}
