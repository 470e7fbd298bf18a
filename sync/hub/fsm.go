package hub

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/store/ratelog"
	"github.com/outpost-edge/outpost/store/twin"
)

// FSM is the hub's state machine: the registry, twins, deployments, the
// event log with its de-duplication index and cursors, and the
// cloud-to-device queues, all in one kv store. Its state changes only
// through Apply of an encoded command (command.go), one at a time (the
// caller serialises: Hub.mu today, raft's FSM goroutine later). Apply reads
// no clock and no randomness: the stores' clock, while a command applies,
// is the command's time, chosen by its proposer.
//
// The signatures map onto hashicorp/raft's: Apply(entry) is
// raft.FSM.Apply(log.Data), Snapshot(w) is FSMSnapshot.Persist's body and
// Restore(r) is raft.FSM.Restore.
type FSM struct {
	opts   FSMOptions
	db     *kv.DB
	ids    *identity.Cache
	edges  *edgeIndex // over ids: the edges by deviceScope (tree.go)
	twins  *twin.Store
	queues *queue.Store
	events *eventLog
	// readers are the stores above as other goroutines (the servers) see
	// them: Restore replaces them all at once, on the applying goroutine.
	readers atomic.Pointer[stores]
	log     *slog.Logger

	metrics    *metrics
	refusedLog *ratelog.Limiter
	// collisionLogged is when (command time, unix ms) a collision of each
	// instance was last logged, for those logged within collisionLogEvery.
	collisionLogged map[string]int64

	applying atomic.Bool
	at       atomic.Int64 // the applying command's time, unix ms

	applied     atomic.Uint64 // cache of the applied log index (replicated.go); 0: read the store
	appliedZero atomic.Bool   // the store's applied index is known to be 0
	onRestore   func()        // after RestoreFrom: the hub wakes its pulls
	// onImage: an image record came or went (imagefsm.go); the hub's files follow.
	onImage func(digest string, deleted bool)
	// onApplied: a command was applied, on every node (the hub's deployer
	// hears what may change which deployments target which edges).
	onApplied func(cmd any)
}

// FSMOptions configure an FSM.
type FSMOptions struct {
	Logger *slog.Logger
	// Now is the wall clock of reads outside Apply (a twin's age, a
	// queue's status); Apply never calls it. Default time.Now.
	Now func() time.Time
	// Incarnation is the incarnation of the hub's twin replica, the same on
	// every node of a cluster (store/twin's Options.Incarnation); default
	// DefaultIncarnation.
	Incarnation string
}

// DefaultIncarnation is the hub's twin replica incarnation when
// FSMOptions.Incarnation is not set.
const DefaultIncarnation = "1"

// OpenFSM opens the state machine on db (which it does not close).
func OpenFSM(ctx context.Context, db *kv.DB, opts FSMOptions) (*FSM, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Incarnation == "" {
		opts.Incarnation = DefaultIncarnation
	}
	f := &FSM{opts: opts, db: db, log: opts.Logger, metrics: &metrics{}, refusedLog: &ratelog.Limiter{}, collisionLogged: map[string]int64{}}
	if err := f.openStores(ctx); err != nil {
		return nil, fmt.Errorf("open hub state machine: %w", err)
	}
	return f, nil
}

// openStores (re)opens the stores over the kv state: they keep caches
// and counters that a Restore replaces.
func (f *FSM) openStores(ctx context.Context) error {
	var err error
	if f.ids, err = identity.Open(ctx, f.db, identity.Options{Logger: f.log}); err != nil {
		return err
	}
	f.edges = newEdgeIndex(f.ids)
	if f.twins, err = twin.Open(ctx, f.db, twin.Options{Role: twin.Cloud, Name: "hub", Logger: f.log, Now: f.nowMS,
		Replicated: true, Incarnation: f.opts.Incarnation}); err != nil {
		return err
	}
	if f.queues, err = queue.Open(ctx, f.db, queue.Options{Logger: f.log, Now: f.now, Replicated: true}); err != nil {
		return err
	}
	if f.events, err = openEventLog(f.db); err != nil {
		_ = f.queues.Close()
		return err
	}
	f.readers.Store(&stores{ids: f.ids, edges: f.edges, twins: f.twins, queues: f.queues, events: f.events})
	return nil
}

// stores are the FSM's stores, for readers outside Apply.
type stores struct {
	ids    *identity.Cache
	edges  *edgeIndex
	twins  *twin.Store
	queues *queue.Store
	events *eventLog
}

// Close stops the stores' goroutines (not the kv store).
func (f *FSM) Close() error {
	if f.events != nil {
		f.events.close()
	}
	if f.queues != nil {
		return f.queues.Close()
	}
	return nil
}

// now is the stores' clock: the command's time while one applies.
func (f *FSM) now() time.Time {
	if f.applying.Load() {
		return time.UnixMilli(f.at.Load())
	}
	return f.opts.Now()
}

func (f *FSM) nowMS() int64 { return f.now().UnixMilli() }

// Apply decodes one entry and applies it. An entry it cannot decode is an
// ErrCommand and changes nothing; a command the state refuses (ErrInvalid,
// ErrNotFound, ErrFull) changes nothing either. The result is the
// command's answer (protocol.MessagesAck for appendEvents, the number of
// events removed for expireEvents, of messages for expireC2D, of records
// for expireJobs, nil
// otherwise).
func (f *FSM) Apply(entry []byte) (any, error) {
	cmd, at, err := decodeCommand(entry)
	if err != nil {
		return nil, err
	}
	f.at.Store(at)
	f.applying.Store(true)
	defer f.applying.Store(false)
	res, err := f.applyCommand(context.Background(), cmd)
	if err == nil && f.onApplied != nil {
		f.onApplied(cmd)
	}
	return res, err
}

func (f *FSM) applyCommand(ctx context.Context, cmd any) (any, error) {
	switch c := cmd.(type) {
	case appendEvents:
		return f.appendEventsLocked(ctx, c)
	case mergeTwins:
		_, err := f.twins.ApplyDelta(ctx, c.Batch)
		return nil, err
	case expireEvents:
		return f.expireEventsLocked(ctx, c)
	case ackPull:
		return nil, f.ackPullLocked(ctx, c)
	case putIdentities:
		return nil, f.putIdentitiesLocked(ctx, c)
	case deleteIdentities:
		return nil, f.deleteIdentitiesLocked(ctx, c)
	case writeTwin:
		return nil, f.writeTwinLocked(ctx, c)
	case applyConfiguration:
		return nil, f.applyConfigurationLocked(ctx, c)
	case sendC2D:
		return nil, f.sendC2DLocked(ctx, c)
	case gcTwins:
		return nil, f.gcTwinsLocked(ctx, c)
	case expireC2D:
		return f.expireC2DLocked(ctx, c)
	case setNode:
		return nil, f.setNodeLocked(ctx, c)
	case removeNode:
		return nil, f.db.Commit(ctx, kv.Del(nodeKey(c.ID)))
	case setOwner:
		return nil, f.setOwnerLocked(ctx, c)
	case setPresence:
		return nil, f.setPresenceLocked(ctx, c)
	case putConfiguration:
		return nil, f.putConfigurationLocked(ctx, c)
	case deleteConfiguration:
		return nil, f.deleteConfigurationLocked(ctx, c)
	case putImage:
		return nil, f.putImageLocked(ctx, c)
	case deleteImage:
		return nil, f.deleteImageLocked(ctx, c)
	case putJob:
		return nil, f.putJobLocked(ctx, c)
	case jobProgress:
		return nil, f.jobProgressLocked(ctx, c)
	case cancelJob:
		return nil, f.cancelJobLocked(ctx, c)
	case expireJobs:
		return f.expireJobsLocked(ctx, c)
	case setRouteCursors:
		return nil, f.setRouteCursorsLocked(ctx, c)
	}
	return nil, fmt.Errorf("%w: hub state machine: no apply for command %T", ErrCommand, cmd)
}

// putIdentitiesLocked adds identities and makes sure their twins exist.
func (f *FSM) putIdentitiesLocked(ctx context.Context, c putIdentities) error {
	if err := f.ids.Put(ctx, c.IDs...); err != nil {
		return err
	}
	for _, id := range c.IDs {
		if _, err := f.twins.EnsureGeneration(ctx, id.ID(), id.Generation); err != nil {
			return err
		}
	}
	return nil
}
