package crdt

import (
	"errors"
	"math"
	"testing"
	"time"

	"pgregory.net/rapid"
)

const (
	baseMs     = int64(1_700_000_000_000) // a trusted "now"
	minTrusted = int64(1_600_000_000_000)
)

// fakePhys is an adversarial physical clock driven by the test.
type fakePhys struct{ ms int64 }

func (f *fakePhys) now() int64 { return f.ms }

// jump moves the physical clock: small steps, big jumps either way, skew,
// and 1970 boots.
func (f *fakePhys) jump(t *rapid.T) {
	switch rapid.IntRange(0, 9).Draw(t, "jump") {
	case 0:
		f.ms = rapid.Int64Range(0, 100_000).Draw(t, "boot1970")
	case 1:
		f.ms -= rapid.Int64Range(0, 3_600_000).Draw(t, "back")
	case 2:
		f.ms += rapid.Int64Range(0, 2*3_600_000).Draw(t, "forward")
	case 3:
		f.ms = baseMs + rapid.Int64Range(-600_000, 600_000).Draw(t, "resync")
	default:
		f.ms += rapid.Int64Range(0, 50).Draw(t, "step")
	}
}

func TestProp13HLC(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		phys := &fakePhys{ms: baseMs}
		var persisted int64
		var issued []HLC
		skews := 0
		opts := ClockOptions{Now: phys.now, MinTrusted: minTrusted,
			Persist: func(r int64) error { persisted = r; return nil },
			OnSkew:  func(HLC, int64) { skews++ }}
		c := NewClock(opts)
		var last HLC
		for range rapid.IntRange(1, 60).Draw(t, "steps") {
			switch rapid.IntRange(0, 5).Draw(t, "action") {
			case 0:
				phys.jump(t)
			case 1: // observe a peer value, possibly far ahead
				m := HLC{Wall: last.Wall + rapid.Int64Range(-5000, 30*3_600_000).Draw(t, "peer"),
					Logical: rapid.Uint32().Draw(t, "peerLogical")}
				if h, ok := checkObserve(t, c, m, &skews); ok {
					last, issued = h, append(issued, h)
				}
			case 2: // restart from the persisted bound
				opts.Reserved = persisted
				c = NewClock(opts)
				phys.jump(t)
			case 3:
				c.Trust(baseMs + rapid.Int64Range(0, 1000).Draw(t, "trusted"))
				if c.Logical() {
					t.Fatalf("still logical after Trust")
				}
			default:
				h := mustNow(t, c)
				if !last.Less(h) {
					t.Fatalf("Now not strictly monotone: %v then %v", last, h)
				}
				if h.Wall >= persisted {
					t.Fatalf("issued wall %d not below persisted bound %d", h.Wall, persisted)
				}
				last, issued = h, append(issued, h)
			}
		}
		for i := 1; i < len(issued); i++ {
			if !issued[i-1].Less(issued[i]) {
				t.Fatalf("issued sequence not increasing at %d: %v %v", i, issued[i-1], issued[i])
			}
		}
	})
}

// checkObserve observes m and checks the skew guard; when m is accepted it
// returns the next Now, which must be above m.
func checkObserve(t *rapid.T, c *Clock, m HLC, skews *int) (HLC, bool) {
	pt, trusted := c.physical()
	before, skewsBefore := c.Last(), *skews
	err := c.Observe(m)
	if trusted && m.Wall > pt+(24*time.Hour).Milliseconds() {
		if !errors.Is(err, ErrClockSkew) || c.Last() != before {
			t.Fatalf("hard limit: err=%v last moved %v -> %v", err, before, c.Last())
		}
		return HLC{}, false
	}
	if err != nil {
		t.Fatalf("observe %v: %v", m, err)
	}
	if trusted && m.Wall > pt+(5*time.Minute).Milliseconds() && *skews != skewsBefore+1 {
		t.Fatalf("skew beyond max offset not reported")
	}
	h := mustNow(t, c)
	if !m.Less(h) {
		t.Fatalf("Now %v not above observed %v", h, m)
	}
	return h, true
}

func mustNow(t interface{ Fatalf(string, ...any) }, c *Clock) HLC {
	h, err := c.Now()
	if err != nil {
		t.Fatalf("Now: %v", err)
	}
	return h
}

func TestClockTable(t *testing.T) {
	t.Run("counter overflow bumps wall", func(t *testing.T) {
		phys := &fakePhys{ms: baseMs}
		c := NewClock(ClockOptions{Now: phys.now})
		if err := c.Observe(HLC{Wall: baseMs + 10, Logical: math.MaxUint32}); err != nil {
			t.Fatal(err)
		}
		if h := mustNow(t, c); h != (HLC{Wall: baseMs + 11}) {
			t.Fatalf("got %v", h)
		}
	})
	t.Run("1970 boot runs logical until trusted", func(t *testing.T) {
		phys := &fakePhys{ms: 5000}
		c := NewClock(ClockOptions{Now: phys.now, MinTrusted: minTrusted})
		if !c.Logical() {
			t.Fatal("want logical mode")
		}
		a, b := mustNow(t, c), mustNow(t, c)
		if a.Wall != 0 || !a.Less(b) {
			t.Fatalf("logical mode issued %v, %v", a, b)
		}
		// A far-ahead peer is not refused without a trusted reference.
		if err := c.Observe(HLC{Wall: baseMs}); err != nil {
			t.Fatal(err)
		}
		c.Trust(baseMs + 1000)
		phys.ms += 10
		if h := mustNow(t, c); c.Logical() || h.Wall != baseMs+1010 {
			t.Fatalf("after Trust: logical=%v now=%v", c.Logical(), h)
		}
		phys.ms = baseMs + 5000 // NTP fixed the raw clock: it wins
		if h := mustNow(t, c); h.Wall != baseMs+5000 {
			t.Fatalf("raw trusted clock ignored: %v", h)
		}
	})
	t.Run("persist failure issues nothing", func(t *testing.T) {
		boom := errors.New("disk full")
		c := NewClock(ClockOptions{Now: func() int64 { return baseMs }, Persist: func(int64) error { return boom }})
		if _, err := c.Now(); !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
		if !c.Last().IsZero() {
			t.Fatalf("clock moved: %v", c.Last())
		}
	})
	t.Run("restart with clock behind", func(t *testing.T) {
		var bound int64
		phys := &fakePhys{ms: baseMs}
		c := NewClock(ClockOptions{Now: phys.now, Persist: func(r int64) error { bound = r; return nil }})
		a := mustNow(t, c)
		phys.ms -= 3_600_000
		c = NewClock(ClockOptions{Now: phys.now, Reserved: bound})
		if b := mustNow(t, c); !a.Less(b) {
			t.Fatalf("after restart %v not above %v", b, a)
		}
	})
	t.Run("restart from the exact last", func(t *testing.T) {
		// A clock restarted from Last() issues what the one that ran on
		// issues, with the physical clock ahead, stalled or behind.
		phys := &fakePhys{ms: baseMs}
		ran := NewClock(ClockOptions{Now: phys.now})
		for _, step := range []int64{0, 5, 0, -2000, 3000} {
			phys.ms += step
			restarted := NewClock(ClockOptions{Now: phys.now, Last: ran.Last()})
			if a, b := mustNow(t, ran), mustNow(t, restarted); a != b {
				t.Fatalf("step %d: %v ran on, %v restarted", step, a, b)
			}
		}
	})
}
