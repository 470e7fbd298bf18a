package egress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/broker/route"
	"github.com/outpost-edge/outpost/store/ratelog"
	"github.com/outpost-edge/outpost/sync/hub"
)

// Bounds of one delivery.
const (
	MaxBatchEvents = 256
	MaxBatchBytes  = 4 << 20
)

// Log is the hub as the router reads it and commits its cursors
// (*hub.Hub).
type Log interface {
	Events(from uint64, limit int) ([]hub.Event, error)
	LastSeq() uint64
	EventsAppended() <-chan struct{}
	RouteCursors() (map[string]uint64, error)
	SetRouteCursors(ctx context.Context, cursors map[string]uint64) error
	Leads() bool
}

// Event is one event as an endpoint delivers it: its seq, its device
// (Kafka's record key) and its JSON, the shape GET /messages/events
// returns.
type Event struct {
	Seq      uint64
	DeviceID string
	JSON     []byte
}

// Endpoint delivers a batch of events in order. nil means the endpoint
// acknowledged every one of them; on an error the router delivers the
// whole batch again later (consumers de-duplicate by seq).
type Endpoint interface {
	Deliver(ctx context.Context, evs []Event) error
	Close() error
}

// Options configure a Router.
type Options struct {
	Log    Log
	Logger *slog.Logger
	// Endpoints by name, each the sink of the routes that name it; an
	// endpoint no route names gets nothing and its cursor follows the log.
	Endpoints map[string]Endpoint
	Routes    []Route
	// CommitEvery spaces cursor commits (default 500 ms); MaxBackoff caps
	// the wait between failed deliveries (default 30 s); Poll is how often
	// a follower checks whether it leads (default 1 s).
	CommitEvery, MaxBackoff, Poll time.Duration
}

// Router hands the hub's event log to endpoints: one goroutine and one
// cursor per endpoint, started by Run.
type Router struct {
	opts   Options
	log    *slog.Logger
	lanes  []*lane
	errLog ratelog.Limiter
}

// lane is one endpoint's delivery: its goroutine owns committed and
// lastCommit; the counters are read by WriteMetrics.
type lane struct {
	name   string
	ep     Endpoint
	routes []Route

	cursor                     atomic.Uint64 // delivered (leader) or committed (follower)
	delivered, errors, skipped atomic.Int64
	up                         atomic.Bool

	committed  uint64
	lastCommit time.Time
}

// New makes a router over opts.Endpoints; Close closes them.
func New(opts Options) (*Router, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.CommitEvery <= 0 {
		opts.CommitEvery = 500 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	r := &Router{opts: opts, log: opts.Logger}
	for _, name := range slices.Sorted(maps.Keys(opts.Endpoints)) {
		l := &lane{name: name, ep: opts.Endpoints[name]}
		for _, rt := range opts.Routes {
			if rt.Endpoint == name {
				l.routes = append(l.routes, rt)
			}
		}
		r.lanes = append(r.lanes, l)
	}
	for _, rt := range opts.Routes {
		if opts.Endpoints[rt.Endpoint] == nil {
			return nil, fmt.Errorf("route %q: no endpoint %q", rt.Name, rt.Endpoint)
		}
	}
	return r, nil
}

// Run delivers until ctx ends, then commits what was delivered.
func (r *Router) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, l := range r.lanes {
		wg.Go(func() { r.runLane(ctx, l) })
	}
	wg.Wait()
	return nil
}

// Close closes the endpoints (after Run returned).
func (r *Router) Close() error {
	var errs []error
	for _, l := range r.lanes {
		if err := l.ep.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close endpoint %s: %w", l.name, err))
		}
	}
	return errors.Join(errs...)
}

// runLane delivers while this node leads and follows the committed cursor
// while it does not (a cluster's follower).
func (r *Router) runLane(ctx context.Context, l *lane) {
	for ctx.Err() == nil {
		cursors, err := r.opts.Log.RouteCursors()
		if err != nil {
			r.log.Error("read route cursors", "endpoint", l.name, "err", err)
		} else {
			l.committed = cursors[l.name]
			l.cursor.Store(l.committed)
			if r.opts.Log.Leads() {
				r.lead(ctx, l)
				continue
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(r.opts.Poll):
		}
	}
}

// lead delivers from the committed cursor until ctx ends or this node no
// longer leads.
func (r *Router) lead(ctx context.Context, l *lane) {
	l.lastCommit = time.Now()
	defer r.commit(context.WithoutCancel(ctx), l, true)
	woke := false
	for ctx.Err() == nil && r.opts.Log.Leads() {
		wake := r.opts.Log.EventsAppended()
		n, err := r.step(ctx, l)
		if n == 0 && err == nil && woke {
			// Woken for nothing: a stopped hub's channel stays closed.
			sleep(ctx, r.opts.Poll/10)
		}
		woke = false
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, errNotLeader) {
				r.log.Error("route endpoint: read the event log", "endpoint", l.name, "err", err)
				sleep(ctx, r.opts.Poll)
			}
			continue
		}
		if n > 0 {
			r.commit(ctx, l, false)
			continue
		}
		// Caught up: commit what is pending (now, or once CommitEvery
		// passed) and wait for events.
		wait := r.opts.Poll
		if l.cursor.Load() > l.committed {
			if due := r.opts.CommitEvery - time.Since(l.lastCommit); due > 0 {
				wait = min(wait, due)
			} else {
				r.commit(ctx, l, true)
			}
		}
		select {
		case <-ctx.Done():
		case <-wake:
			woke = true
		case <-time.After(wait):
		}
	}
}

var errNotLeader = errors.New("this node no longer leads")

// step delivers the next batch (retrying until it is delivered) and
// moves the lane's cursor past it; n is how many events of the log it
// passed, 0 when there were none.
func (r *Router) step(ctx context.Context, l *lane) (n int, err error) {
	cursor := l.cursor.Load()
	last := r.opts.Log.LastSeq() // before the read: what is missing then expired
	evs, err := r.opts.Log.Events(cursor+1, MaxBatchEvents)
	if err != nil {
		return 0, err
	}
	if len(evs) == 0 {
		if last > cursor {
			r.skip(l, cursor+1, last)
		}
		return 0, nil
	}
	if evs[0].Seq > cursor+1 {
		r.skip(l, cursor+1, evs[0].Seq-1)
	}
	batch, upto, err := l.batch(evs)
	if err != nil {
		return 0, err
	}
	if len(batch) > 0 {
		if err := r.deliver(ctx, l, batch); err != nil {
			return 0, err
		}
		l.delivered.Add(int64(len(batch)))
	}
	l.cursor.Store(upto)
	return len(evs), nil
}

// batch picks the events of evs the lane's routes send it, up to
// MaxBatchBytes (one event at least); upto is the last seq it covers.
func (l *lane) batch(evs []hub.Event) (batch []Event, upto uint64, err error) {
	size := 0
	for _, e := range evs {
		if l.routed(e) {
			data, err := json.Marshal(e.JSON())
			if err != nil {
				return nil, 0, fmt.Errorf("encode event %d: %w", e.Seq, err)
			}
			if len(batch) > 0 && size+len(data) > MaxBatchBytes {
				break
			}
			batch = append(batch, Event{Seq: e.Seq, DeviceID: e.DeviceID, JSON: data})
			size += len(data)
		}
		upto = e.Seq
	}
	return batch, upto, nil
}

func (l *lane) routed(e hub.Event) bool {
	if len(l.routes) == 0 {
		return false
	}
	m := message(e)
	for _, rt := range l.routes {
		if rt.r.Matches(m) {
			return true
		}
	}
	return false
}

// message is what a route condition sees of an event: its application
// and system properties (with the sending device and module, as IoT Edge
// stamps them) and its body.
func message(e hub.Event) *route.Message {
	sys := e.Sys
	if sys["connectionDeviceId"] == "" || (e.ModuleID != "" && sys["connectionModuleId"] == "") {
		sys = make(map[string]string, len(e.Sys)+2)
		for k, v := range e.Sys {
			sys[k] = v
		}
		sys["connectionDeviceId"] = e.DeviceID
		if e.ModuleID != "" {
			sys["connectionModuleId"] = e.ModuleID
		}
	}
	return &route.Message{Source: route.Source{Kind: route.Telemetry, Device: e.DeviceID, Module: e.ModuleID, Output: sys["outputName"]},
		App: e.Props, Sys: sys, Body: e.Body}
}

// deliver retries batch until the endpoint takes it, with a growing wait
// (capped at MaxBackoff); it gives up only when ctx ends or this node no
// longer leads.
func (r *Router) deliver(ctx context.Context, l *lane, batch []Event) error {
	backoff := 100 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := l.ep.Deliver(actx, batch)
		cancel()
		if err == nil {
			l.up.Store(true)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		l.errors.Add(1)
		l.up.Store(false)
		if ok, suppressed := r.errLog.Allow(l.name); ok {
			r.log.Warn("route endpoint did not take a batch; retrying", "endpoint", l.name, "first_seq", batch[0].Seq,
				"last_seq", batch[len(batch)-1].Seq, "retry_in", backoff, "failures_not_logged", suppressed, "err", err)
		}
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
		if !r.opts.Log.Leads() {
			return errNotLeader
		}
		backoff = min(2*backoff, r.opts.MaxBackoff)
	}
}

// skip passes over events that left the log (retention) before the
// endpoint had them: never waited for, counted and logged.
func (r *Router) skip(l *lane, from, to uint64) {
	l.skipped.Add(int64(to - from + 1))
	l.cursor.Store(to)
	r.log.Warn("events expired from the log before the route endpoint took them: skipped (raise --retention or fix the endpoint)",
		"endpoint", l.name, "first_seq", from, "last_seq", to, "events", to-from+1)
}

// commit records the lane's cursor through the hub's state machine, at
// most every CommitEvery unless now.
func (r *Router) commit(ctx context.Context, l *lane, now bool) {
	c := l.cursor.Load()
	if c <= l.committed || (!now && time.Since(l.lastCommit) < r.opts.CommitEvery) {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := r.opts.Log.SetRouteCursors(cctx, map[string]uint64{l.name: c}); err != nil {
		if r.opts.Log.Leads() {
			r.log.Warn("commit route cursor (delivery resumes from the last one committed)", "endpoint", l.name, "cursor", c, "err", err)
		}
		return
	}
	l.committed, l.lastCommit = c, time.Now()
}

// sleep waits d; false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// WriteMetrics writes the router's metrics in Prometheus text format.
func (r *Router) WriteMetrics(w io.Writer) {
	last := r.opts.Log.LastSeq()
	for _, m := range []struct {
		name, typ, help string
		value           func(l *lane) int64
	}{
		{"outpost_hub_route_cursor", "gauge", "Seq of the last event the endpoint acknowledged (on a follower: the cursor committed).", func(l *lane) int64 { return int64(l.cursor.Load()) }},
		{"outpost_hub_route_backlog", "gauge", "Events in the log after the endpoint's cursor.", func(l *lane) int64 { return int64(last - min(last, l.cursor.Load())) }},
		{"outpost_hub_route_delivered_total", "counter", "Events the endpoint acknowledged (again after a retry or a restart: at least once).", func(l *lane) int64 { return l.delivered.Load() }},
		{"outpost_hub_route_errors_total", "counter", "Failed delivery attempts.", func(l *lane) int64 { return l.errors.Load() }},
		{"outpost_hub_route_skipped_total", "counter", "Events that expired from the log before the endpoint took them.", func(l *lane) int64 { return l.skipped.Load() }},
		{"outpost_hub_route_up", "gauge", "1 when the endpoint's last delivery attempt succeeded.", func(l *lane) int64 {
			if l.up.Load() {
				return 1
			}
			return 0
		}},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", m.name, m.help, m.name, m.typ)
		for _, l := range r.lanes {
			fmt.Fprintf(w, "%s{endpoint=%q} %d\n", m.name, l.name, m.value(l))
		}
	}
}
