package crdt

import (
	"cmp"
	"fmt"
	"math"
	"time"
)

// HLC is a hybrid logical clock value: wall-clock milliseconds plus a counter.
type HLC struct {
	Wall    int64  `cbor:"1,keyasint,omitempty"` // unix ms
	Logical uint32 `cbor:"2,keyasint,omitempty"`
}

// Compare returns -1, 0 or +1 ordering by (Wall, Logical).
func (h HLC) Compare(o HLC) int {
	if c := cmp.Compare(h.Wall, o.Wall); c != 0 {
		return c
	}
	return cmp.Compare(h.Logical, o.Logical)
}

// Less reports h < o.
func (h HLC) Less(o HLC) bool { return h.Compare(o) < 0 }

// IsZero reports whether h is the zero value.
func (h HLC) IsZero() bool { return h == HLC{} }

// String renders h as wall.logical.
func (h HLC) String() string { return fmt.Sprintf("%d.%d", h.Wall, h.Logical) }

// tick returns the smallest HLC greater than h; a full counter moves the wall.
func (h HLC) tick() HLC {
	if h.Logical == math.MaxUint32 {
		return HLC{Wall: h.Wall + 1}
	}
	return HLC{Wall: h.Wall, Logical: h.Logical + 1}
}

const (
	defaultMaxOffset = 5 * time.Minute
	defaultHardLimit = 24 * time.Hour
	// reserveAhead is how far past an issued wall the persisted bound goes, so
	// that only about one Persist call happens per 10 s of issued time.
	reserveAhead = int64(10_000)
	// defaultMinTrusted is 2020-01-01: a physical clock before it is surely wrong.
	defaultMinTrusted = int64(1_577_836_800_000)
)

// ClockOptions configure a Clock. Zero values take the documented defaults.
type ClockOptions struct {
	// Now returns physical unix ms; nil uses time.Now.
	Now func() int64
	// MaxOffset: observed walls further ahead call OnSkew (default 5m).
	MaxOffset time.Duration
	// HardLimit: observed walls further ahead are refused (default 24h).
	HardLimit time.Duration
	// Reserved is the persisted upper bound loaded at boot. Every HLC issued
	// before the restart has Wall < Reserved.
	Reserved int64
	// Last is the exact last HLC issued or observed before, for an owner
	// that persists Last() with every change instead of reserving ahead
	// (a replicated store: it continues exactly where it stopped). The
	// clock starts above both Last and Reserved.
	Last HLC
	// Persist stores a new upper bound; it is called before issuing an HLC
	// whose Wall reaches the current bound, with reserved = wall + 10 s.
	Persist func(reserved int64) error
	// MinTrusted: physical readings below it (1970 boots, before build time)
	// are untrusted and the clock runs in pure-logical mode. 0 means
	// 2020-01-01; a negative value trusts every reading.
	MinTrusted int64
	// OnSkew is called when an observed HLC is beyond MaxOffset (alarm).
	OnSkew func(peer HLC, physical int64)
}

// Clock is a hybrid logical clock with a persisted upper bound, a forward
// skew guard and a pure-logical fallback for untrusted physical time.
type Clock struct {
	now        func() int64
	maxOffset  int64
	hardLimit  int64
	reserved   int64
	persist    func(int64) error
	minTrusted int64
	onSkew     func(HLC, int64)
	last       HLC
	offset     int64 // added to untrusted readings after Trust
	trusted    bool  // offset is valid
}

// NewClock returns a clock that issues HLCs above opts.Reserved.
func NewClock(opts ClockOptions) *Clock {
	c := &Clock{
		now:        opts.Now,
		maxOffset:  opts.MaxOffset.Milliseconds(),
		hardLimit:  opts.HardLimit.Milliseconds(),
		reserved:   opts.Reserved,
		persist:    opts.Persist,
		minTrusted: opts.MinTrusted,
		onSkew:     opts.OnSkew,
		last:       HLC{Wall: opts.Reserved},
	}
	if c.last.Less(opts.Last) {
		c.last = opts.Last
	}
	if c.now == nil {
		c.now = func() int64 { return time.Now().UnixMilli() }
	}
	if opts.MaxOffset <= 0 {
		c.maxOffset = defaultMaxOffset.Milliseconds()
	}
	if opts.HardLimit <= 0 {
		c.hardLimit = defaultHardLimit.Milliseconds()
	}
	if c.minTrusted == 0 {
		c.minTrusted = defaultMinTrusted
	}
	return c
}

// physical returns the trusted physical time, or ok=false in logical mode.
func (c *Clock) physical() (pt int64, ok bool) {
	raw := c.now()
	if raw >= c.minTrusted {
		return raw, true
	}
	if c.trusted {
		if adj := raw + c.offset; adj >= c.minTrusted {
			return adj, true
		}
	}
	return 0, false
}

// Logical reports whether the clock runs in pure-logical mode because the
// physical clock is untrusted.
func (c *Clock) Logical() bool {
	_, ok := c.physical()
	return !ok
}

// Trust records a trusted current time (NTP, GNSS, the cloud's HLC in the
// sync handshake). While the raw physical clock stays untrusted, readings are
// shifted by the offset measured now; a raw clock that becomes trusted by
// itself (NTP fixed it) is used as is.
func (c *Clock) Trust(wall int64) {
	if wall < c.minTrusted {
		return
	}
	c.offset = wall - c.now()
	c.trusted = true
}

// Last returns the largest HLC issued or observed so far.
func (c *Clock) Last() HLC { return c.last }

// Now issues an HLC strictly greater than every HLC issued or observed
// before, including before a restart given ClockOptions.Reserved.
func (c *Clock) Now() (HLC, error) {
	next := c.last.tick()
	if pt, ok := c.physical(); ok && pt > c.last.Wall {
		next = HLC{Wall: pt}
	}
	if next.Wall >= c.reserved {
		r := next.Wall + reserveAhead
		if c.persist != nil {
			if err := c.persist(r); err != nil {
				return HLC{}, fmt.Errorf("reserve clock bound %d: %w", r, err)
			}
		}
		c.reserved = r
	}
	c.last = next
	return next, nil
}

// Observe applies the receive rule for a peer timestamp m: afterwards Now
// returns a value greater than m. If m is more than HardLimit ahead of the
// trusted physical time it returns ErrClockSkew and leaves the clock alone;
// beyond MaxOffset it calls OnSkew and still observes (causality wins). In
// logical mode there is no physical reference, so no guard applies.
func (c *Clock) Observe(m HLC) error {
	if pt, ok := c.physical(); ok {
		if m.Wall > pt+c.hardLimit {
			return fmt.Errorf("observe %v at physical %d: %w", m, pt, ErrClockSkew)
		}
		if m.Wall > pt+c.maxOffset && c.onSkew != nil {
			c.onSkew(m, pt)
		}
	}
	if c.last.Less(m) {
		c.last = m
	}
	return nil
}
