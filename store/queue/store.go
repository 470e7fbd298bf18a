package queue

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/outpost-edge/outpost/store/kv"
)

// Errors. Callers match them with errors.Is.
var (
	ErrFull      = errors.New("queue: full")
	ErrClosed    = errors.New("queue: store is closed")
	ErrInvalid   = errors.New("queue: invalid")
	ErrTooLarge  = errors.New("queue: batch larger than one transaction can hold")
	ErrNotLeased = errors.New("queue: ack beyond what was handed out")
	// ErrNoSpace: the disk is below its reserve (Options.Space). The error
	// wraps ErrFull too, so a publisher is told "quota exceeded".
	ErrNoSpace = errors.New("queue: disk below its reserve")
)

// Space is the disk monitor (store/disk) as the queues see it.
type Space interface {
	// Telemetry answers for an append of n record bytes.
	Telemetry(n int64) error
	// Low says the disk is below its reserve: reclaim after drains without
	// waiting for every queue to empty.
	Low() bool
}

// Options tune a Store. Zero values take the defaults.
type Options struct {
	Logger *slog.Logger
	// TotalMaxBytes and TotalMaxCount cap all queues together (record bytes,
	// messages); 0 means no cap.
	TotalMaxBytes int64
	TotalMaxCount int64
	// Space, if set, is asked before every append; when it refuses, the
	// append fails with ErrNoSpace (and ErrFull), whatever the queue's
	// Overflow: dropping old messages gives no disk back until a compaction.
	Space Space

	// SweepEvery is how often expired messages at the head of each queue are
	// removed, the elapsed clock is saved, and loss counters are logged;
	// default 30 s.
	SweepEvery time.Duration
	// ReclaimAfter: once every queue is empty and at least this many bytes
	// were deleted since the last reclaim, the store asks kv to give disk
	// back (kv.DB.Reclaim). Default 16 MiB; negative leaves it to kv's own
	// schedule.
	ReclaimAfter int64

	// Now is the wall clock and Mono a monotonic reading (any origin);
	// tests replace them to jump the wall clock. Defaults: time.Now and the
	// monotonic time since process start.
	Now  func() time.Time
	Mono func() time.Duration

	// Replicated is for a store whose every change comes through a
	// replicated log applied on several machines (the hub's state machine
	// under raft): its state must be a function of the changes alone. There
	// is no elapsed clock (Mono is not used; a message's age is Now minus
	// its enqueue time, 0 while Now is behind it) and no background sweep:
	// reads skip expired and unreadable messages without removing them,
	// and Expire removes them, called inside a replicated change with Now
	// at that change's time. Every change is durable when its call returns,
	// a refused Append's count included.
	Replicated bool
}

var processStart = time.Now()

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SweepEvery <= 0 {
		o.SweepEvery = 30 * time.Second
	}
	if o.ReclaimAfter == 0 {
		o.ReclaimAfter = 16 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Mono == nil {
		o.Mono = func() time.Duration { return time.Since(processStart) }
	}
}

// Store holds every queue of the process in the one kv database.
type Store struct {
	db   *kv.DB
	opts Options
	log  *slog.Logger

	elapsed0 int64         // elapsed clock at Open
	mono0    time.Duration // Mono() at Open

	// budget bounds one kv request so Badger never refuses it.
	budgetCount, budgetSize int64
	valueThreshold          int64

	mu      sync.Mutex // guards queues and nextID
	queues  map[string]*Queue
	nextID  uint32
	closed  atomic.Bool
	closing sync.Once

	totMu              sync.Mutex // guards the live totals over all queues
	totCount, totBytes int64

	outstanding sync.WaitGroup // ops handed to a queue's chain and not finished

	doneMu   sync.Mutex
	doneList []completion
	doneSig  chan struct{}

	freed     atomic.Int64 // bytes deleted since the last reclaim
	reclaims  atomic.Int64 // reclaims finished (tests)
	ctx       context.Context
	cancel    context.CancelFunc
	reclaimCh chan struct{}
	stop      chan struct{}
	wg        sync.WaitGroup
}

// Open loads the queues' metadata (one record per queue; the backlog is not
// read) and starts the store's two goroutines: one finishes commits and
// sweeps expired messages, the other asks kv to reclaim disk after drains.
func Open(ctx context.Context, db *kv.DB, opts Options) (*Store, error) {
	opts.setDefaults()
	s := &Store{
		db: db, opts: opts, log: opts.Logger,
		queues:    map[string]*Queue{},
		nextID:    1,
		doneSig:   make(chan struct{}, 1),
		reclaimCh: make(chan struct{}, 1),
		stop:      make(chan struct{}),
	}
	b := db.Badger()
	s.budgetCount, s.budgetSize = b.MaxBatchCount()/2, b.MaxBatchSize()/2
	s.valueThreshold = b.Opts().ValueThreshold
	if err := s.load(ctx); err != nil {
		return nil, fmt.Errorf("open queues: %w", err)
	}
	if !opts.Replicated {
		s.mono0 = opts.Mono()
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(2)
	go s.run()
	go s.reclaimer()
	return s, nil
}

func (s *Store) load(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(clockKey)
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			var c clock
			if err := item.Value(func(v []byte) error { return kv.Unmarshal(v, &c) }); err != nil {
				return fmt.Errorf("read clock: %w", err)
			}
			s.elapsed0 = c.Elapsed
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: metaPrefix()})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			key := it.Item().KeyCopy(nil)
			if len(key) != 6 {
				continue
			}
			var m meta
			if err := it.Item().Value(func(v []byte) error { return kv.Unmarshal(v, &m) }); err != nil {
				return fmt.Errorf("read queue meta %x: %w", key, err)
			}
			id := binary.BigEndian.Uint32(key[2:])
			q := newQueue(s, id, m, QueueOptions{})
			s.queues[m.Name] = q
			s.nextID = max(s.nextID, id+1)
			s.totCount += m.Count
			s.totBytes += m.Bytes
			// A message is committed with its queue's meta, which carries the
			// clock, so the clock never restarts behind a stored message.
			s.elapsed0 = max(s.elapsed0, m.Elapsed)
		}
		return nil
	})
}

// Close waits for the commits already handed to the queues, saves the
// elapsed clock and stops the store's goroutines. It does not close db.
func (s *Store) Close() error {
	var err error
	s.closing.Do(func() {
		s.closed.Store(true)
		for _, q := range s.all() {
			q.mu.Lock() // barrier: ops that passed the closed check are counted
			q.mu.Unlock()
		}
		s.outstanding.Wait()
		if !s.opts.Replicated {
			err = s.saveClock(context.Background())
		}
		close(s.stop)
		s.cancel()
		s.wg.Wait()
	})
	return err
}

func (s *Store) all() []*Queue {
	s.mu.Lock()
	defer s.mu.Unlock()
	qs := make([]*Queue, 0, len(s.queues))
	for _, q := range s.queues {
		qs = append(qs, q)
	}
	slices.SortFunc(qs, func(a, b *Queue) int { return int(a.id) - int(b.id) })
	return qs
}

// SetTotalMaxBytes changes the cap on all queues' record bytes (0: none).
// Messages already stored stay; appends are checked against the new cap.
func (s *Store) SetTotalMaxBytes(n int64) {
	s.totMu.Lock()
	s.opts.TotalMaxBytes = max(n, 0)
	s.totMu.Unlock()
}

// Totals returns the record bytes and messages of all queues and the cap
// on their bytes (0: none).
func (s *Store) Totals() (bytes, count, maxBytes int64) {
	s.totMu.Lock()
	defer s.totMu.Unlock()
	return s.totBytes, s.totCount, s.opts.TotalMaxBytes
}

// QueueOptions are a queue's caps and policies. They are not persisted: the
// caller passes them each time it opens the queue.
type QueueOptions struct {
	MaxBytes int64 // record bytes; 0 = no per-queue cap
	MaxCount int64 // messages; 0 = no per-queue cap
	Overflow Overflow
	// DefaultTTL applies to messages without a TTL; 0 = never expire.
	DefaultTTL time.Duration
}

// Overflow says what a full queue does with a new message.
type Overflow uint8

const (
	// Reject refuses the new messages with an error wrapping ErrFull.
	Reject Overflow = iota
	// DropOldest deletes the oldest messages of this queue to make room.
	DropOldest
)

func (o Overflow) String() string {
	if o == DropOldest {
		return "drop-oldest"
	}
	return "reject"
}

// Queue opens the named queue, creating it if needed, and sets its options.
func (s *Store) Queue(name string, opts QueueOptions) (*Queue, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	if opts.MaxBytes < 0 || opts.MaxCount < 0 || opts.DefaultTTL < 0 || opts.Overflow > DropOldest {
		return nil, fmt.Errorf("%w: queue %q options %+v", ErrInvalid, name, opts)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if q, ok := s.queues[name]; ok {
		q.mu.Lock()
		q.opts = opts
		q.mu.Unlock()
		return q, nil
	}
	m := meta{Name: name, Head: 1, Next: 1, Elapsed: s.elapsed()}
	v, err := kv.Marshal(&m)
	if err != nil {
		return nil, err
	}
	id := s.nextID
	if err := s.db.Commit(context.Background(), kv.Set(metaKey(id), v)); err != nil {
		return nil, fmt.Errorf("create queue %q: %w", name, err)
	}
	s.nextID++
	q := newQueue(s, id, m, opts)
	s.queues[name] = q
	return q, nil
}

func validName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty queue name", ErrInvalid)
	case len(name) > 256:
		return fmt.Errorf("%w: queue name longer than 256 bytes", ErrInvalid)
	case !utf8Valid(name):
		return fmt.Errorf("%w: queue name %q is not UTF-8 or contains NUL", ErrInvalid, name)
	}
	return nil
}

// Lookup returns the named queue if it exists, without creating it or
// changing its options.
func (s *Store) Lookup(name string) (*Queue, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, ok := s.queues[name]
	return q, ok
}

// Queues returns the names of every queue in the store, sorted.
func (s *Store) Queues() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.queues))
	for n := range s.queues {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Stats returns every queue's statistics by name.
func (s *Store) Stats() map[string]Stats {
	out := map[string]Stats{}
	for _, q := range s.all() {
		out[q.name] = q.Stats()
	}
	return out
}

// Depths returns every queue's message count by name: Stats without the
// read of each queue's oldest message (a per-second sampler's view).
func (s *Store) Depths() map[string]int64 {
	out := map[string]int64{}
	for _, q := range s.all() {
		q.mu.Lock()
		out[q.name] = q.live.Count
		q.mu.Unlock()
	}
	return out
}

// elapsed is the store's runtime clock in nanoseconds: it advances only
// with the monotonic clock while the store is open, so wall-clock jumps do
// not move it (and time powered off is not counted).
func (s *Store) elapsed() int64 {
	if s.opts.Replicated {
		return 0
	}
	return s.elapsed0 + max(int64(s.opts.Mono()-s.mono0), 0)
}

// age is how long a message has waited: the smaller of the wall-clock and
// elapsed-clock ages, so a forward wall jump cannot make it look older. A
// wall clock behind the enqueue time is evidently wrong and is ignored.
func (s *Store) age(r *record, now time.Time, elapsed int64) time.Duration {
	if s.opts.Replicated {
		return time.Duration(max(now.UnixNano()-r.Wall, 0))
	}
	ea := max(elapsed-r.Elapsed, 0)
	wa := now.UnixNano() - r.Wall
	if wa < 0 {
		return time.Duration(ea)
	}
	return time.Duration(min(wa, ea))
}

func (s *Store) expired(r *record, now time.Time, elapsed int64) bool {
	return r.TTL > 0 && s.age(r, now, elapsed) >= time.Duration(r.TTL)
}

func (s *Store) saveClock(ctx context.Context) error {
	v, err := kv.Marshal(&clock{Elapsed: s.elapsed()})
	if err != nil {
		return err
	}
	if err := s.db.Commit(ctx, kv.Set(clockKey, v)); err != nil {
		return fmt.Errorf("save queue clock: %w", err)
	}
	return nil
}

// Barrier calls done (from the database's writer goroutine; it must not
// block) once every commit queued on the store's database before the call,
// by any writer, is finished: durable in the sense of the database's
// Durability, or failed (failures go to their own writers). It costs no
// write of its own: an empty commit does not reach Badger's log.
func (s *Store) Barrier(done func(error)) { s.db.CommitAsync(nil, done) }
