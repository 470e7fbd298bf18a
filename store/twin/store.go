package twin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/store/kv"
)

// Role says which sections this replica may write.
type Role uint8

const (
	// Edge replicas stamp reported properties for the devices and modules
	// connected to them.
	Edge Role = iota + 1
	// Cloud replicas (the hub) write tags and desired properties.
	Cloud
)

// Errors.
var (
	ErrNotFound     = errors.New("twin not found")
	ErrBadID        = errors.New("invalid twin id")
	ErrWrongSide    = errors.New("section not writable on this side")
	ErrTooLarge     = errors.New("twin section over its size limit")
	ErrStaleSession = errors.New("a newer connection of this identity exists")
	// ErrBadDelta wraps every refusal of a peer's delta for what it holds
	// (as opposed to a storage failure while applying it).
	ErrBadDelta = errors.New("twin delta refused")
)

// Options configure a Store.
type Options struct {
	Role Role
	// Name is the stable base of this replica's id: "hub" on the cloud side,
	// the edge device id on an edge (which may contain '.': the id splits at
	// its last '.'). A random incarnation is added on first open (and
	// whenever the store must start a new life).
	Name string
	// Machine names the machine the store runs on (a digest of its machine
	// id; "" when unknown). It is recorded with the replica id; when a store
	// opens on another machine than the one it recorded (its directory was
	// copied or moved), it takes a new incarnation and keeps its twins and
	// version vector: the copy and the original must not write under one
	// replica id.
	Machine string
	Limits  Limits
	Logger  *slog.Logger
	// Now returns physical time in unix ms (tests); default time.Now.
	Now func() int64
	// Cache is how many twins are kept decoded in memory; default 256.
	Cache int
	// Replicated is for a store whose every change comes through a
	// replicated log applied on several machines (the hub's state machine
	// under raft): its state must be a function of the changes alone. The
	// replica id is Name plus the fixed Incarnation (Machine is not used);
	// the last HLC and the next dot sequence are persisted exactly, in the
	// same write as each change, not reserved ahead; and a refused change
	// leaves them as they were. A re-opened store, or one restored from a
	// copy of another's keys, then stamps the next change exactly as a
	// store that ran on. BeginSession refuses: it would issue a stamp
	// outside any change.
	Replicated bool
	// Incarnation is the replica's incarnation when Replicated: 1 to 32
	// ASCII letters and digits, the same on every machine.
	Incarnation string
}

// Store keeps twins in kv. It is safe for concurrent use; writes are
// serialised by one lock (twin writes are rare next to telemetry).
type Store struct {
	db     *kv.DB
	opts   Options
	log    *slog.Logger
	self   crdt.ReplicaID
	policy crdt.Policy

	mu    sync.Mutex
	clock *crdt.Clock
	seq   *crdt.Seq
	vv    crdt.VV
	cache *cache
	stats Stats
	acks  map[string]memberAck // what the other replicas acknowledged (members.go)
	gcq   gcQueue              // twins that may hold garbage (gc.go)
	// changed is closed and replaced after every committed change; the
	// uplink waits on it instead of polling.
	changed chan struct{}
}

// Stats counts what the store refused or dropped, so nothing is silent.
type Stats struct {
	LocalPatches  int64
	RemoteFields  int64
	Duplicates    int64 // remote fields already covered by our version vector
	Forbidden     int64 // remote fields from an origin that may not write the section
	SkewedBatches int64 // remote batches refused for a clock too far ahead
	GCRemoved     int64
	// Removed counts twins deleted because their identity was deleted (or
	// left this edge's scope); Reset those started afresh because their
	// identity was created again (a new generation).
	Removed, Reset int64
}

// IsCloud tells replica ids of the hub from those of edges.
func IsCloud(id crdt.ReplicaID) bool { return strings.HasPrefix(string(id), cloudPrefix) }

const (
	cloudPrefix = "hub."
	edgePrefix  = "edge:"
)

// Open loads (or creates) the replica identity, clock and version vector.
func Open(ctx context.Context, db *kv.DB, opts Options) (*Store, error) {
	if opts.Role != Edge && opts.Role != Cloud {
		return nil, fmt.Errorf("open twin store: role must be Edge or Cloud")
	}
	if opts.Name == "" || strings.ContainsRune(opts.Name, 0) {
		return nil, fmt.Errorf("open twin store: name %q must be non-empty without NUL", opts.Name)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Cache <= 0 {
		opts.Cache = 256
	}
	if opts.Replicated {
		if _, _, ok := SplitReplica(crdt.ReplicaID(opts.Name + "." + opts.Incarnation)); !ok {
			return nil, fmt.Errorf("open twin store: a replicated store needs an incarnation of 1 to 32 ASCII letters and digits, not %q", opts.Incarnation)
		}
		opts.Machine = ""
	}
	opts.Limits = opts.Limits.orDefault()
	s := &Store{db: db, opts: opts, log: opts.Logger, policy: crdt.OwnershipPolicy(IsCloud), cache: newCache(opts.Cache), changed: make(chan struct{})}
	if err := s.loadMeta(ctx); err != nil {
		return nil, fmt.Errorf("open twin store: %w", err)
	}
	if err := s.loadAcks(); err != nil {
		return nil, fmt.Errorf("open twin store: %w", err)
	}
	ids, err := s.IDs()
	if err != nil {
		return nil, fmt.Errorf("open twin store: %w", err)
	}
	for _, id := range ids { // any of them may hold tombstones that became stable
		s.gcq.add(id)
	}
	return s, nil
}

// Changed returns a channel that is closed at the next committed change
// (a local patch or a merged delta). Take it before reading, so nothing
// is missed.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// signal wakes the waiters of Changed; s.mu is held.
func (s *Store) signal() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Replica returns this store's replica id (name plus incarnation).
func (s *Store) Replica() crdt.ReplicaID { return s.self }

// VV returns a copy of the version vector: what this replica has of every
// replica's writes.
func (s *Store) VV() crdt.VV {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.vv.Clone()
}

// SeqBound is the highest dot sequence this replica may have issued (for
// crdt.CheckIncarnation in the link handshake).
func (s *Store) SeqBound() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq.Bound()
}

// Stats returns a snapshot of the counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Store-wide metadata keys.
var (
	metaReplica = []byte{kv.PrefixMeta, 't', 'w', 'r'}
	metaSeq     = []byte{kv.PrefixMeta, 't', 'w', 's'}
	metaClock   = []byte{kv.PrefixMeta, 't', 'w', 'c'}
	metaVV      = []byte{kv.PrefixMeta, 't', 'w', 'v'}
	metaMachine = []byte{kv.PrefixMeta, 't', 'w', 'm'}
	// metaLast is the exact last HLC of a Replicated store (metaClock holds
	// a reserved bound otherwise).
	metaLast = []byte{kv.PrefixMeta, 't', 'w', 'h'}
)

// SplitReplica splits a replica id "<base>.<incarnation>" at its last '.':
// an incarnation is 1 to 32 ASCII letters and digits, so a base (an edge's
// device id) may itself contain '.'.
func SplitReplica(id crdt.ReplicaID) (base, incarnation string, ok bool) {
	i := strings.LastIndexByte(string(id), '.')
	if i <= 0 {
		return "", "", false
	}
	base, incarnation = string(id[:i]), string(id[i+1:])
	if incarnation == "" || len(incarnation) > 32 {
		return "", "", false
	}
	for _, c := range []byte(incarnation) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return "", "", false
		}
	}
	return base, incarnation, true
}

// IsEdgeReplica reports whether id is an incarnation of the store of the
// edge device named device ("edge:<device>.<incarnation>"), and not of an
// edge whose id merely starts with device and a '.'.
func IsEdgeReplica(id crdt.ReplicaID, device string) bool {
	base, _, ok := SplitReplica(id)
	return ok && base == edgePrefix+device
}

func (s *Store) loadMeta(ctx context.Context) error {
	var replica, machine string
	var seqNext uint64
	var reserved int64
	var last crdt.HLC
	vv := crdt.VV{}
	err := s.db.View(func(txn *badger.Txn) error {
		for _, r := range []struct {
			key []byte
			v   any
		}{{metaReplica, &replica}, {metaSeq, &seqNext}, {metaClock, &reserved}, {metaVV, &vv}, {metaMachine, &machine}, {metaLast, &last}} {
			if err := getRecord(txn, r.key, r.v); err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	prefix := edgePrefix
	if s.opts.Role == Cloud {
		prefix = cloudPrefix
	}
	base, _, ok := SplitReplica(crdt.ReplicaID(replica))
	switch {
	case !ok || base != prefix+s.opts.Name:
		if replica, err = s.newIncarnation(ctx, prefix, crdt.VV{}); err != nil {
			return err
		}
		seqNext, vv = 0, crdt.VV{}
	case s.opts.Replicated && replica != prefix+s.opts.Name+"."+s.opts.Incarnation:
		// A store that ran alone becomes replicated: the fixed incarnation,
		// the same twins (as for a copy to another machine).
		if replica, err = s.newIncarnation(ctx, prefix, vv); err != nil {
			return err
		}
		seqNext = 0
	case s.opts.Machine != "" && machine != "" && machine != s.opts.Machine:
		// Copied to another machine: a new replica id, the same twins. The
		// old id's writes stay in the version vector (they are sent on and
		// never minted again here); the original keeps writing under it.
		old := replica
		if replica, err = s.newIncarnation(ctx, prefix, vv); err != nil {
			return err
		}
		seqNext = 0
		s.log.Warn("the data directory is on another machine than where it was created: new instance id",
			"old_instance", old, "instance", replica)
	}
	if s.opts.Machine != "" && machine != s.opts.Machine {
		if err := s.put(metaMachine, s.opts.Machine); err != nil {
			return err
		}
	}
	s.self, s.vv = crdt.ReplicaID(replica), vv
	if s.opts.Replicated {
		if last.Wall < reserved { // it ran alone before: start above its reserved bound
			last = crdt.HLC{Wall: reserved}
		}
		s.setStamps(stamps{last: last, next: seqNext})
		return nil
	}
	s.seq = crdt.NewSeq(crdt.SeqOptions{Next: seqNext, Persist: s.persistUint(metaSeq)})
	s.clock = crdt.NewClock(crdt.ClockOptions{
		Now: s.opts.Now, Reserved: reserved, MinTrusted: minTrustedTime,
		Persist: func(r int64) error { return s.put(metaClock, r) },
		OnSkew:  s.onSkew,
	})
	return nil
}

func (s *Store) onSkew(peer crdt.HLC, phys int64) {
	s.log.Warn("peer clock ahead of ours", "peer_wall_ms", peer.Wall, "our_wall_ms", phys)
}

// stamps is where a Replicated store's HLC and dot sequence stand: the
// last HLC issued or observed and the next sequence number.
type stamps struct {
	last crdt.HLC
	next uint64
}

// setStamps starts the clock and the dot sequence of a Replicated store
// at st, with nothing reserved ahead; s.mu is held (or s is opening).
func (s *Store) setStamps(st stamps) {
	s.seq = crdt.NewSeq(crdt.SeqOptions{Next: st.next, Reserve: 1})
	s.clock = crdt.NewClock(crdt.ClockOptions{Now: s.opts.Now, Last: st.last, MinTrusted: minTrustedTime, OnSkew: s.onSkew})
}

// currentStamps is where a Replicated store's stamps stand; s.mu is held.
func (s *Store) currentStamps() stamps {
	return stamps{last: s.clock.Last(), next: s.seq.Bound() + 1}
}

// undoStamps puts a Replicated store's stamps back to st after a refused
// change, which persisted nothing; s.mu is held. Other stores reserve
// ahead and lose nothing by skipping.
func (s *Store) undoStamps(st stamps) {
	if s.opts.Replicated && s.currentStamps() != st {
		s.setStamps(st)
	}
}

// addStamps adds a Replicated store's stamps to the write of a change.
func (s *Store) addStamps(w *writeSet) error {
	if !s.opts.Replicated {
		return nil
	}
	st := s.currentStamps()
	last, err := kv.Marshal(st.last)
	if err != nil {
		return err
	}
	next, err := kv.Marshal(st.next)
	if err != nil {
		return err
	}
	w.ops = append(w.ops, kv.Set(metaLast, last), kv.Set(metaSeq, next))
	return nil
}

// minTrustedTime: a physical clock before 2024 is a gateway without an RTC
// that booted at 1970; the HLC then runs in logical mode.
var minTrustedTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

// newIncarnation records a new replica id with the version vector vv (empty
// for a store starting afresh) and restarts the dot sequence.
func (s *Store) newIncarnation(ctx context.Context, prefix string, vv crdt.VV) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	id := prefix + s.opts.Name + "." + hex.EncodeToString(b[:])
	if s.opts.Replicated {
		id = prefix + s.opts.Name + "." + s.opts.Incarnation
	}
	v, err := kv.Marshal(id)
	if err != nil {
		return "", err
	}
	vvData, err := kv.Marshal(vv)
	if err != nil {
		return "", err
	}
	return id, s.db.Commit(ctx, kv.Set(metaReplica, v), kv.Set(metaVV, vvData), kv.Del(metaSeq))
}

func (s *Store) persistUint(key []byte) func(uint64) error {
	return func(v uint64) error { return s.put(key, v) }
}

func (s *Store) put(key []byte, v any) error {
	b, err := kv.Marshal(v)
	if err != nil {
		return err
	}
	return s.db.Commit(context.Background(), kv.Set(key, b))
}

func getRecord(txn *badger.Txn, key []byte, v any) error {
	item, err := txn.Get(key)
	if err != nil {
		return err
	}
	return item.Value(func(b []byte) error { return kv.Unmarshal(b, v) })
}

// ValidateID checks a twin id: "device" or "device/module", each part an
// IoT Hub id (sas.CheckID).
func ValidateID(id string) error {
	device, module, isModule := strings.Cut(id, "/")
	err := sas.CheckID("device id", device)
	if err == nil && isModule {
		err = sas.CheckID("module id", module)
	}
	if err != nil {
		return fmt.Errorf("%w %q: %v (want DEVICE or DEVICE/MODULE)", ErrBadID, id, err)
	}
	return nil
}
