package kv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Durability says when a commit counts as done.
type Durability uint8

const (
	// Process: committed to the memory-mapped write-ahead log; survives kill -9
	// of the process, not a power cut.
	Process Durability = iota
	// Power: the write-ahead log is synced to the disk before the commit returns.
	Power
)

func (d Durability) String() string {
	if d == Power {
		return "power"
	}
	return "process"
}

// ParseDurability reads "process" or "power".
func ParseDurability(s string) (Durability, error) {
	switch s {
	case "process", "":
		return Process, nil
	case "power":
		return Power, nil
	}
	return 0, fmt.Errorf("durability %q: want process (survives kill -9) or power (fsync before ack)", s)
}

// Errors.
var (
	ErrClosed   = errors.New("kv: database is closed")
	ErrTooLarge = errors.New("kv: batch larger than one transaction can hold")
	ErrFormat   = errors.New("kv: data directory was written by a newer outpost")
)

// Options tune the database. Zero values take the gateway defaults.
type Options struct {
	Durability Durability
	InMemory   bool // tests only: nothing reaches the disk
	Logger     *slog.Logger

	// MemTableSize is one memtable's size (default 8 MiB; the WAL file is
	// twice that, sparse). Each memtable is an arena on the Go heap of
	// about 1.3 times this; a transaction holds at most 15 % of it (Badger's
	// batch limit, which the queues' batches follow), and a flush builds
	// one table of about this size on the heap.
	MemTableSize int64
	// NumMemtables is how many full memtables may wait for their flush
	// before writes stall (default 2); one more is being written.
	NumMemtables int
	// BaseTableSize is the size of the tables compactions write (default
	// 2 MiB); each table being built buffers about twice it on the heap.
	BaseTableSize    int64
	BlockCacheSize   int64 // default 8 MiB
	IndexCacheSize   int64 // default 4 MiB
	ValueLogFileSize int64 // default 4 MiB (mapped at twice that, sparse)
	// ValueThreshold: values of at least this many bytes live in the value
	// log, the tree keeps a pointer. Default 64 B, so message bodies are
	// written once, not copied again by every memtable flush and compaction
	// (at 1 KiB those copies were a quarter of the edge's CPU at full
	// ingest). With Power, Badger syncs the value log on every commit
	// whether or not the commit wrote to it, so keeping bodies in the tree
	// saves no sync. Reclaim runs value-log GC until it frees nothing more.
	ValueThreshold int64

	// MaintainEvery is the interval of value-log GC; default 5 minutes.
	MaintainEvery time.Duration
	// ReclaimAfter is the number of deleted bytes after which maintenance
	// also compacts the tree to give disk back; default 16 MiB.
	ReclaimAfter int64

	// Space, if set, is asked before every Commit that grows the store
	// (bytes set minus bytes freed); its error refuses the commit. Queues
	// commit with CommitAsync, which is never refused here: they gate their
	// appends themselves, and their acks must run on a full disk.
	Space Gate
}

// Gate is the disk monitor (store/disk): Write answers for a management
// write; Check asks it to measure again, which kv does after giving disk
// back.
type Gate interface {
	Write(n int64) error
	Check()
	// Fits says whether n more bytes stay above the allowance, without
	// charging them: a flatten rewrites every table before it frees any.
	Fits(n int64) bool
}

// Allowance is what the store may still allocate in files it creates,
// beyond the holes of the files it has: the next memtable write-ahead log
// and value-log file (both mapped at twice their size), a memtable flush,
// a compaction's tables (bounded by two memtables' worth with this
// package's options) and Badger's 1 MiB discard-stats file. A disk monitor
// that keeps this much free (store/disk) keeps Badger from writing into a
// mapped page the filesystem cannot back (SIGBUS).
func Allowance(o Options) int64 {
	o.setDefaults()
	return 2*o.MemTableSize + 2*o.ValueLogFileSize + o.MemTableSize + 2*o.MemTableSize + 1<<20
}

func (o *Options) setDefaults() {
	def := func(v *int64, d int64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.MemTableSize, 8<<20)
	def(&o.BaseTableSize, 2<<20)
	def(&o.BlockCacheSize, 8<<20)
	def(&o.IndexCacheSize, 4<<20)
	def(&o.ValueLogFileSize, 4<<20)
	def(&o.ValueThreshold, 64)
	def(&o.ReclaimAfter, 16<<20)
	if o.NumMemtables == 0 {
		o.NumMemtables = 2
	}
	if o.MaintainEvery == 0 {
		o.MaintainEvery = 5 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// DB is the process's Badger database with its writer.
type DB struct {
	bdb    *badger.DB
	opts   Options
	log    *slog.Logger
	reqs   chan *request
	stop   chan struct{}
	wg     sync.WaitGroup
	closed atomic.Bool
	once   sync.Once
	// enqMu makes Close wait for enqueues in progress, so that every request
	// either reaches the writer or is answered ErrClosed.
	enqMu sync.RWMutex

	deleted   atomic.Int64 // bytes deleted since the last reclaim
	reclaimCh chan chan error
	stats     Stats
}

// Stats counts the writer's work; read with DB.Stats.
type Stats struct {
	Commits  atomic.Int64 // Commit calls completed
	Groups   atomic.Int64 // Badger transactions written
	Ops      atomic.Int64
	Reclaims atomic.Int64
	// FlattensSkipped counts reclaims that did not flatten the tree: the
	// disk had no room for a second copy of its tables.
	FlattensSkipped atomic.Int64
}

// Open opens (or creates) the database in dir.
func Open(dir string, opts Options) (*DB, error) {
	opts.setDefaults()
	bo := badgerOptions(dir, opts)
	bdb, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("open store in %s: %w", dir, err)
	}
	db := &DB{
		bdb: bdb, opts: opts, log: opts.Logger,
		reqs: make(chan *request, 1024), stop: make(chan struct{}),
		reclaimCh: make(chan chan error),
	}
	if err := db.checkFormat(); err != nil {
		_ = bdb.Close()
		return nil, err
	}
	db.wg.Add(2)
	go db.writer()
	go db.maintain()
	return db, nil
}

func badgerOptions(dir string, o Options) badger.Options {
	bo := badger.DefaultOptions(dir)
	threshold := o.ValueThreshold
	if o.InMemory {
		// No value log in memory: every value must fit under the threshold,
		// which Badger caps at 15 % of the memtable.
		bo = badger.DefaultOptions("").WithInMemory(true)
		threshold = min(1<<20, o.MemTableSize*15/100)
	}
	// Tables keep one size (BaseTableSize, 2 MiB) at every level: a compaction holds up to
	// ~10 table builders, each buffering twice its table, and the default
	// (doubling per level) made a bulk drain of a million queued messages
	// cost 160 MB of heap. Smaller tables cost CPU: every table build
	// allocates a 3 MB index builder.
	bo.TableSizeMultiplier = 1
	return bo.
		WithSyncWrites(o.Durability == Power).
		WithMemTableSize(o.MemTableSize).
		WithNumMemtables(o.NumMemtables).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(4).
		WithBlockCacheSize(o.BlockCacheSize).
		WithIndexCacheSize(o.IndexCacheSize).
		WithValueLogFileSize(o.ValueLogFileSize).
		WithValueThreshold(threshold).
		WithBaseTableSize(o.BaseTableSize).
		WithNumCompactors(2).
		// No block compression: CPU is the scarce resource on a gateway and
		// payloads are often compressed or encrypted already.
		WithCompression(options.None).
		WithDetectConflicts(false).
		WithMetricsEnabled(false).
		WithLogger(badgerLogger{o.Logger})
}

// Close stops the writer (pending commits finish first) and closes Badger.
func (db *DB) Close() error {
	var err error
	db.once.Do(func() {
		db.enqMu.Lock()
		db.closed.Store(true)
		db.enqMu.Unlock()
		close(db.stop)
		db.wg.Wait()
		for {
			select {
			case r := <-db.reqs: // cannot happen after enqMu, but never leave a caller waiting
				r.done(ErrClosed)
				continue
			default:
			}
			break
		}
		err = db.bdb.Close()
	})
	return err
}

// Options reports the options the database was opened with, defaults
// filled in: the sizes in force, for a status.
func (db *DB) Options() Options { return db.opts }

// Durability reports the durability the database was opened with.
func (db *DB) Durability() Durability { return db.opts.Durability }

// View runs fn in a read-only transaction.
func (db *DB) View(fn func(txn *badger.Txn) error) error { return db.bdb.View(fn) }

// Badger exposes the underlying database for iteration and sequence reads by
// the store packages. Writes must go through Commit.
func (db *DB) Badger() *badger.DB { return db.bdb }

// Stats returns the writer's counters.
func (db *DB) Stats() *Stats { return &db.stats }

// Sync forces everything committed so far to the disk.
func (db *DB) Sync() error { return db.bdb.Sync() }

type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error("badger", "msg", fmt.Sprintf(f, a...)) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn("badger", "msg", fmt.Sprintf(f, a...)) }
func (b badgerLogger) Infof(string, ...any)        {}
func (b badgerLogger) Debugf(string, ...any)       {}

// ctxErr returns ctx.Err() or nil when ctx is nil.
func ctxErr(ctx context.Context) error {
	if ctx == nil {
		return nil
	}
	return ctx.Err()
}
