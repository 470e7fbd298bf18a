package wallclock

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/kv"
)

// fake is a wall clock the test sets and a monotonic clock it advances.
type fake struct {
	wall time.Time
	mono time.Duration
}

func (f *fake) advance(d time.Duration) { f.wall, f.mono = f.wall.Add(d), f.mono+d }

var real0 = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

func openDB(t *testing.T) *kv.DB {
	t.Helper()
	db, err := kv.Open(t.TempDir(), kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func open(t *testing.T, db *kv.DB, f *fake, hub bool, log *bytes.Buffer) *Clock {
	t.Helper()
	opts := Options{Now: func() time.Time { return f.wall }, Mono: func() time.Duration { return f.mono }, HubConfirms: hub}
	if log != nil {
		opts.Logger = slog.New(slog.NewTextHandler(log, nil))
	}
	c, err := Open(context.Background(), db, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func near(a, b time.Time) bool { d := a.Sub(b); return d < time.Second && d > -time.Second }

// A gateway without an RTC reboots at 1970: the floor of the last run,
// carried on by the monotonic clock, stands in until NTP sets the clock.
func TestBootAt1970(t *testing.T) {
	db := openDB(t)
	f := &fake{wall: real0}
	c := open(t, db, f, false, nil)
	if st := c.State(); st.Source != Wall || !st.Plausible {
		t.Fatalf("right clock: %+v", st)
	}
	f.advance(10 * time.Minute)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	// Power off for two hours; the board boots at 1970.
	f.wall, f.mono = time.Unix(0, 0), 0
	var log bytes.Buffer
	c = open(t, db, f, false, &log)
	st := c.State()
	if st.Source != Floor || st.Plausible || !near(st.Estimate, real0.Add(10*time.Minute)) {
		t.Fatalf("at 1970: %+v, want the floor %s", st, real0.Add(10*time.Minute))
	}
	if !strings.Contains(log.String(), "wall clock implausible") {
		t.Errorf("no warning logged: %s", log.String())
	}
	f.advance(time.Minute)
	if got := c.Now(); !near(got, real0.Add(11*time.Minute)) {
		t.Errorf("floor does not advance with the monotonic clock: %s", got)
	}
	// NTP sets the clock.
	f.wall = real0.Add(2*time.Hour + 11*time.Minute)
	if st := c.State(); st.Source != Wall || !st.Plausible || !near(st.Estimate, f.wall) {
		t.Errorf("after NTP: %+v", st)
	}
	if !strings.Contains(log.String(), "plausible again") {
		t.Errorf("no notice that the clock is right again: %s", log.String())
	}
}

// A clock a year ahead on an edge with a hub: the hub-confirmed floor
// stands in until the hub confirms the time again; the floor never follows
// the wrong wall clock, so setting it back leaves nothing in the future.
func TestYearAheadWithHub(t *testing.T) {
	db := openDB(t)
	f := &fake{wall: real0}
	c := open(t, db, f, true, nil)
	c.Confirm(real0)
	f.advance(time.Minute)
	_ = c.Close()

	f.wall, f.mono = real0.Add(365*24*time.Hour), 0
	c = open(t, db, f, true, nil)
	st := c.State()
	if st.Source != Floor || st.Plausible || !near(st.Estimate, real0.Add(time.Minute)) {
		t.Fatalf("a year ahead: %+v", st)
	}
	c.Confirm(real0.Add(3 * time.Minute))
	f.advance(time.Minute)
	if st := c.State(); st.Source != Hub || st.Plausible || !near(st.Estimate, real0.Add(4*time.Minute)) {
		t.Fatalf("after the hub confirmed: %+v", st)
	}
	f.wall = real0.Add(4 * time.Minute) // NTP
	if st := c.State(); st.Source != Hub || !st.Plausible {
		t.Fatalf("after NTP: %+v", st)
	}
}

// A hub edge whose clock runs 20 days ahead (within MaxJump, so used) and
// is then set right: the floor stayed with the hub, so the right clock is
// not taken for one behind.
func TestAheadThenSetBackDoesNotPoisonFloor(t *testing.T) {
	db := openDB(t)
	f := &fake{wall: real0}
	c := open(t, db, f, true, nil)
	c.Confirm(real0)
	_ = c.Close()
	f.wall, f.mono = real0.Add(20*24*time.Hour), 0
	c = open(t, db, f, true, nil)
	if st := c.State(); st.Source != Wall {
		t.Fatalf("20 days ahead is within MaxJump: %+v", st)
	}
	f.advance(2 * time.Minute)
	_ = c.Close()
	f.wall, f.mono = real0.Add(time.Hour), 0
	c = open(t, db, f, true, nil)
	if st := c.State(); st.Source != Wall || !st.Plausible {
		t.Fatalf("the right clock after a wrong one: %+v", st)
	}
}

// A standalone edge has nothing to confirm its clock: a jump ahead is
// trusted (and the floor follows it).
func TestStandaloneTrustsJumpAhead(t *testing.T) {
	db := openDB(t)
	f := &fake{wall: real0}
	c := open(t, db, f, false, nil)
	_ = c.Close()
	f.wall, f.mono = real0.Add(365*24*time.Hour), 0
	c = open(t, db, f, false, nil)
	if st := c.State(); st.Source != Wall || !st.Plausible {
		t.Fatalf("standalone, a year later: %+v", st)
	}
}

// Before any run recorded a floor, only "before 2024" is implausible.
func TestFirstStart(t *testing.T) {
	db := openDB(t)
	f := &fake{wall: time.Unix(0, 0)}
	c := open(t, db, f, true, nil)
	if st := c.State(); st.Source != Floor || !near(st.Estimate, MinTrusted) {
		t.Fatalf("first start at 1970: %+v", st)
	}
	f.wall = real0.Add(3 * 365 * 24 * time.Hour)
	if st := c.State(); st.Source != Wall {
		t.Fatalf("first start, any clock after MinTrusted is taken: %+v", st)
	}
}

// A hub edge that never heard from its hub records no floor: the next run
// must not take MinTrusted plus uptime for a confirmed time.
func TestUnconfirmedFloorNotSaved(t *testing.T) {
	db := openDB(t)
	f := &fake{wall: real0}
	c := open(t, db, f, true, nil)
	f.advance(time.Hour)
	_ = c.Close()
	f.mono = 0
	c = open(t, db, f, true, nil)
	if st := c.State(); st.Source != Wall || !st.Plausible {
		t.Fatalf("second start without a hub confirmation: %+v", st)
	}
}
