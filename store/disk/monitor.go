package disk

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Errors. A refused write's error wraps one of them.
var (
	ErrLow  = errors.New("disk: free space below the reserve, telemetry refused")
	ErrFull = errors.New("disk: full, only deletes run")
)

// Level is how close the disk is to full.
type Level uint32

const (
	OK               Level = iota // everything is written
	TelemetryRefused              // queue appends refused; management writes use the budget
	Full                          // only writes that free space run
)

func (l Level) String() string {
	switch l {
	case TelemetryRefused:
		return "telemetry-refused"
	case Full:
		return "full"
	}
	return "ok"
}

// kickEvery: charges past each multiple of it ask for a measurement, so a
// value-log file or write-ahead log the store started meanwhile has its
// holes filled (Options.FillHoles) without waiting for the interval.
const kickEvery = 4 << 20

// BallastFile is the ballast's name in Options.Dir.
const BallastFile = "ballast"

// Options configure a Monitor.
type Options struct {
	// Dir is the data directory: the filesystem measured, and where the
	// ballast file lives. Required.
	Dir string
	// Store is the directory of the memory-mapped store whose holes are
	// subtracted from the free space; default Dir.
	Store string
	// Allowance is what the store may still allocate in files it creates
	// (see kv.Allowance). Below it the level is Full. Required.
	Allowance int64
	// Budget is kept for management writes once telemetry is refused:
	// telemetry is refused below Allowance + Budget.
	Budget int64
	// Ballast is the size of the ballast file; 0 keeps none.
	Ballast int64
	// Hysteresis is how far above a threshold the free space must climb
	// before the level improves; default Budget, at least 1 MiB.
	Hysteresis int64
	// FillHoles allocates the blocks of every hole in the store's files at
	// each measurement (fallocate, keeping their size), so a page the store
	// writes through a mapping is already backed: a disk filled by another
	// program then cannot fault the store's existing files, only files it
	// created since the last measurement. The space is the same the holes
	// were counted as already.
	FillHoles bool
	// Every is the measuring interval; default 500 ms (statfs, a read of the
	// store's directory and a stat of the files still being written). Writes through Telemetry and Write are
	// charged in between, so this only bounds how late a disk filled by
	// another program is seen.
	Every  time.Duration
	Logger *slog.Logger
	// OnChange, if set, is called on the monitor goroutine after the level
	// changed. It must not block.
	OnChange func(Status)
}

// Status is the last measurement.
type Status struct {
	Level     Level `json:"-"`
	State     string
	Size      int64 // filesystem bytes
	Avail     int64 // statfs free bytes
	Holes     int64 // unallocated bytes inside the store's files
	Free      int64 // Avail − Holes: what the store can count on
	Allowance int64 // below this Free the level is Full
	// Reserve: below this Free telemetry is refused. Allowance + Budget,
	// plus the ballast's size while it is released: the space a released
	// ballast gave back is the store's, never telemetry's.
	Reserve     int64
	Ballast     int64 // bytes the ballast holds now (0: released or none)
	BallastSize int64 // bytes the ballast holds when taken
	// RefusedTelemetry and RefusedWrites count the refusals so far.
	RefusedTelemetry int64
	RefusedWrites    int64
}

// Monitor measures the disk and answers whether a write may go ahead.
type Monitor struct {
	opts    Options
	log     *slog.Logger
	ballast string

	holes holeScanner // the store's files, those that cannot have holes remembered

	mu    sync.Mutex // guards st and measuring
	st    Status
	gen   atomic.Uint64 // measurements so far
	level atomic.Uint32
	// spent is charged by Telemetry and Write since the last measurement;
	// telMargin and writeMargin are what the last measurement left above
	// the two thresholds.
	spent                  atomic.Int64
	telMargin, writeMargin atomic.Int64
	refusedTel, refusedW   atomic.Int64

	kick chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
}

// Open measures the disk, releases the ballast if the free space is below
// the reserve (before the caller opens the store: a process killed on a
// full disk starts again) or takes it if there is room, and starts the
// monitor goroutine.
func Open(opts Options) (*Monitor, error) {
	if opts.Dir == "" || opts.Allowance <= 0 || opts.Budget < 0 || opts.Ballast < 0 {
		return nil, fmt.Errorf("disk monitor: Dir and a positive Allowance are required (%+v)", opts)
	}
	if opts.Store == "" {
		opts.Store = opts.Dir
	}
	if opts.Hysteresis <= 0 {
		opts.Hysteresis = max(opts.Budget, 1<<20)
	}
	if opts.Every <= 0 {
		opts.Every = 500 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Monitor{opts: opts, log: opts.Logger, ballast: filepath.Join(opts.Dir, BallastFile),
		kick: make(chan struct{}, 1), stop: make(chan struct{})}
	held, err := allocated(m.ballast)
	if err != nil {
		return nil, fmt.Errorf("disk monitor: %w", err)
	}
	if held > 0 && held < opts.Ballast {
		// A ballast cut short (crash while allocating, or the size changed):
		// release it and let measure take a whole one when there is room.
		if err := os.Remove(m.ballast); err != nil {
			return nil, fmt.Errorf("disk monitor: %w", err)
		}
		held = 0
	}
	m.st = Status{Allowance: opts.Allowance, Reserve: opts.Allowance + opts.Budget, Ballast: held, BallastSize: opts.Ballast}
	if err := m.measure(); err != nil {
		return nil, err
	}
	m.wg.Add(1)
	go m.run()
	return m, nil
}

// Close stops the monitor. The ballast stays on disk for the next start.
func (m *Monitor) Close() error {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	m.wg.Wait()
	return nil
}

func (m *Monitor) run() {
	defer m.wg.Done()
	t := time.NewTicker(m.opts.Every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		case <-m.kick:
		}
		if err := m.measure(); err != nil {
			m.log.Warn("disk: measure", "err", err)
		}
	}
}

// Check asks the monitor to measure now (after a drain freed space).
func (m *Monitor) Check() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Level is the level of the last measurement.
func (m *Monitor) Level() Level { return Level(m.level.Load()) }

// Status returns the last measurement and the refusal counters.
func (m *Monitor) Status() Status {
	m.mu.Lock()
	st := m.st
	m.mu.Unlock()
	st.RefusedTelemetry, st.RefusedWrites = m.refusedTel.Load(), m.refusedW.Load()
	return st
}

// Telemetry charges a queue append of n record bytes; it fails with an
// error wrapping ErrLow when the disk is below the reserve.
func (m *Monitor) Telemetry(n int64) error {
	if m.admit(n, TelemetryRefused, &m.telMargin) {
		return nil
	}
	m.refusedTel.Add(1)
	st := m.Status()
	return fmt.Errorf("%w (%s free for the store, reserve %s)", ErrLow, FormatSize(st.Free), FormatSize(st.Reserve))
}

// Write charges a management write (twin, identity, deployment) of n
// bytes; it fails with an error wrapping ErrFull when the disk is below
// the allowance. Writes that free space need no charge.
func (m *Monitor) Write(n int64) error {
	if m.admit(n, Full, &m.writeMargin) {
		return nil
	}
	m.refusedW.Add(1)
	st := m.Status()
	return fmt.Errorf("%w (%s free for the store, allowance %s)", ErrFull, FormatSize(st.Free), FormatSize(st.Allowance))
}

// admit charges twice n (a record costs at most that on disk before a
// compaction) and says whether the level stays below refuse. A charge past
// the margin of the last measurement measures again first.
func (m *Monitor) admit(n int64, refuse Level, margin *atomic.Int64) bool {
	for range 2 {
		gen := m.gen.Load()
		if m.Level() >= refuse {
			return false
		}
		if s := m.spent.Add(2 * n); s <= margin.Load() {
			if s/kickEvery != (s-2*n)/kickEvery {
				m.Check() // the store may have started a new mapped file: back it soon
			}
			return true
		}
		m.spent.Add(-2 * n)
		m.mu.Lock()
		if m.gen.Load() == gen { // nobody measured meanwhile
			if err := m.measureLocked(); err != nil {
				m.log.Warn("disk: measure", "err", err)
			}
		}
		m.mu.Unlock()
	}
	m.raise(refuse)
	return false
}

// raise sets the level to at least l: a write refused because it does not
// fit the margin of a fresh measurement means the disk is at that level,
// and it improves, as any level, only hysteresis above the threshold.
func (m *Monitor) raise(l Level) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.st.Level >= l {
		return
	}
	prev := m.st.Level
	m.st.Level, m.st.State = l, l.String()
	m.level.Store(uint32(l))
	m.logLevel(prev, m.st)
	if m.opts.OnChange != nil {
		m.opts.OnChange(m.st)
	}
}

func (m *Monitor) measure() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.measureLocked()
}

func (m *Monitor) measureLocked() error {
	sp, holes, err := m.read()
	if err != nil {
		return err
	}
	st := &m.st
	free := sp.Avail - holes
	opening := m.gen.Load() == 0
	switch {
	case st.Ballast > 0 && (free < st.Allowance || opening && free < m.opts.Allowance+m.opts.Budget):
		// Running, only what fills the disk below the allowance frees the
		// ballast. Opening, below the reserve is enough: the store is about
		// to create a write-ahead log and a value-log file and to flush what
		// it replays, and nothing else can make room for that.
		if err := os.Remove(m.ballast); err != nil {
			return fmt.Errorf("disk: release ballast: %w", err)
		}
		m.log.Warn("disk: ballast released, something filled the disk", "free", free, "allowance", st.Allowance, "ballast", st.Ballast)
		st.Ballast = 0
		if sp, holes, err = m.read(); err != nil {
			return err
		}
	case st.Ballast == 0 && m.opts.Ballast > 0 && free >= m.opts.Allowance+m.opts.Budget+m.opts.Hysteresis+m.opts.Ballast:
		if err := allocate(m.ballast, m.opts.Ballast); err != nil {
			m.log.Warn("disk: take ballast", "err", err)
			break
		}
		st.Ballast = m.opts.Ballast
		m.log.Info("disk: ballast taken", "bytes", st.Ballast)
		if sp, holes, err = m.read(); err != nil {
			return err
		}
	}
	st.Size, st.Avail, st.Holes, st.Free = sp.Size, sp.Avail, holes, sp.Avail-holes
	st.Reserve = m.opts.Allowance + m.opts.Budget + m.opts.Ballast - st.Ballast
	prev := st.Level
	st.Level = levelFor(st.Free, prev, st.Allowance, st.Reserve, m.opts.Hysteresis)
	st.State = st.Level.String()
	m.spent.Store(0)
	m.telMargin.Store(st.Free - st.Reserve)
	m.writeMargin.Store(st.Free - st.Allowance)
	m.level.Store(uint32(st.Level))
	m.gen.Add(1)
	if st.Level != prev || m.gen.Load() == 1 && st.Level != OK {
		m.logLevel(prev, *st)
		if m.opts.OnChange != nil {
			m.opts.OnChange(*st)
		}
	}
	return nil
}

// read fills the store's holes (with FillHoles) and counts those left in
// one walk, then reads the filesystem, so the free space includes what the
// filling took.
func (m *Monitor) read() (Space, int64, error) {
	holes, fillErr, err := m.holes.scan(m.opts.Store, m.opts.FillHoles)
	if err != nil {
		return Space{}, 0, err
	}
	if fillErr != nil && !errors.Is(fillErr, syscall.ENOSPC) {
		m.log.Warn("disk: allocate the store's holes", "err", fillErr)
	}
	sp, err := Statfs(m.opts.Dir)
	return sp, holes, err
}

func (m *Monitor) logLevel(prev Level, st Status) {
	args := []any{"state", st.State, "was", prev.String(), "free", st.Free, "reserve", st.Reserve,
		"allowance", st.Allowance, "ballast", st.Ballast}
	if st.Level > prev {
		m.log.Warn("disk: space low", args...)
	} else {
		m.log.Info("disk: space back", args...)
	}
}

// levelFor is the level for free bytes: below allowance Full, below
// reserve TelemetryRefused; a level improves only once free is hyst above
// its threshold, so a disk at the edge does not flap.
func levelFor(free int64, prev Level, allowance, reserve, hyst int64) Level {
	switch {
	case free < allowance:
		return Full
	case prev == Full && free < allowance+hyst:
		return Full
	case free < reserve:
		return TelemetryRefused
	case prev >= TelemetryRefused && free < reserve+hyst:
		return TelemetryRefused
	}
	return OK
}

// Fits says whether n more bytes (charged twice, as writes are) stay above
// the allowance, without charging or counting anything.
func (m *Monitor) Fits(n int64) bool {
	return m.Level() < Full && m.spent.Load()+2*n <= m.writeMargin.Load()
}

// Low says whether telemetry is refused now: callers reclaim disk after
// drains without waiting for their queues to empty.
func (m *Monitor) Low() bool { return m.Level() >= TelemetryRefused }
