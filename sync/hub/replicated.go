package hub

import (
	"context"
	"encoding/binary"
	"errors"
	"io"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/kv"
)

// What a replicated log needs of the FSM beyond Apply: entries applied
// with their log index, exactly once across restarts. The FSM's kv state
// outlives the process (the raft wiring starts with
// NoSnapshotRestoreOnStart), so the index of the last applied entry is
// kept in the same store and entries at or below it are skipped when the
// log replays them after a restart.
//
// The index is written after a batch's commands, not with each command's
// writes (the stores commit on their own), so a crash between the two
// applies the batch's last entries again on restart. Commands are made to
// bear that: events are recognised by their digests, twin deltas merge
// idempotently, identities, images and node records are set, deletes find
// nothing, and a C2D send finds its own message at the queue's tail
// (c2dAtTail). A twin write or a deployment applied again is stamped again:
// the same values under a later version on that node, which edges merge as
// a newer write (not built: carrying the command's index into the twin
// store so that it can tell).

// appliedKey holds the index of the last log entry the FSM applied.
var appliedKey = []byte{kv.PrefixMeta, 'h', 'r', 'a'}

// LogEntry is one entry of the replicated log: its index and the encoded
// command (nil for an entry that carries no command, e.g. a membership
// change, which only advances the index).
type LogEntry struct {
	Index uint64
	Data  []byte
}

// Result is Apply's answer to one entry.
type Result struct {
	Value any
	Err   error
	// Skipped: the entry was applied before (a replay after a restart).
	Skipped bool
}

// ApplyEntries applies entries in order, skips those at or below the
// applied index, and records the last index after the batch (one write
// per batch). Entries must come in log order without gaps, as raft
// delivers them.
func (f *FSM) ApplyEntries(entries []LogEntry) []Result {
	out := make([]Result, len(entries))
	applied := f.AppliedIndex()
	last := applied
	for i, e := range entries {
		if e.Index <= applied {
			out[i].Skipped = true
			continue
		}
		last = e.Index
		if e.Data != nil {
			out[i].Value, out[i].Err = f.Apply(e.Data)
		}
	}
	if last > applied {
		if err := f.setApplied(last); err != nil {
			// The state moved but its index did not: a restart replays
			// these entries; say so loudly rather than lose the answer.
			f.log.Error("record the applied raft index; a restart replays the last entries", "index", last, "err", err)
		}
	}
	return out
}

// AppliedIndex is the index of the last entry ApplyEntries applied (0 for
// a store that never applied one).
func (f *FSM) AppliedIndex() uint64 {
	if v := f.applied.Load(); v != 0 || f.appliedZero.Load() {
		return v
	}
	var idx uint64
	_ = f.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(appliedKey)
		if err != nil {
			return nil
		}
		return item.Value(func(v []byte) error {
			if len(v) == 8 {
				idx = binary.BigEndian.Uint64(v)
			}
			return nil
		})
	})
	f.applied.Store(idx)
	return idx
}

// ResetApplied forgets the applied index: the state is the start of a
// new log (a single hub, or a backup, becoming a cluster's first node).
func (f *FSM) ResetApplied() error { return f.setApplied(0) }

func (f *FSM) setApplied(idx uint64) error {
	if err := f.db.Commit(context.Background(), kv.Set(appliedKey, kv.AppendUint64(nil, idx))); err != nil {
		return err
	}
	f.applied.Store(idx)
	if idx == 0 {
		f.appliedZero.Store(true)
	}
	return nil
}

// SnapshotView is a consistent read-only view of the FSM's state, taken
// between two applies and written later while applies go on (raft's
// FSMSnapshot). Release it when done.
type SnapshotView struct {
	f   *FSM
	txn *badger.Txn
}

// View captures the state as it is now: cheap (a read transaction).
func (f *FSM) View() *SnapshotView {
	return &SnapshotView{f: f, txn: f.db.Badger().NewTransaction(false)}
}

// Write streams the view in the snapshot format (see FSM.Snapshot).
func (v *SnapshotView) Write(w io.Writer) error {
	if v.txn == nil {
		return errors.New("write hub snapshot: the view was released")
	}
	return writeSnapshot(w, v.txn)
}

// Release ends the view's read transaction.
func (v *SnapshotView) Release() {
	if v.txn != nil {
		v.txn.Discard()
		v.txn = nil
	}
}

// RestoreFrom replaces the state with a snapshot (FSM.Restore) and resets
// the cached applied index to the one the snapshot holds.
func (f *FSM) RestoreFrom(r io.Reader) error {
	err := f.Restore(r)
	f.applied.Store(0)
	f.appliedZero.Store(false)
	if err != nil {
		return err
	}
	if f.onRestore != nil {
		f.onRestore()
	}
	return nil
}

// Empty reports whether the state holds no identity, twin, event,
// cloud-to-device message or image record: a node about to join a
// cluster must be (the log it replays assumes an empty start), and a
// first node that is not starts the log behind a snapshot of its state.
// Image records count: Open records the files of a store that has none
// (adoptImages), so a data directory that held images is not empty.
func (f *FSM) Empty() (bool, error) {
	empty := true
	err := f.db.View(func(txn *badger.Txn) error {
		for _, p := range [][]byte{{kv.PrefixIdentity}, {kv.PrefixTwin}, {kv.PrefixEvent}, {kv.PrefixQueueMsg}, imagePrefix} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: p})
			it.Rewind()
			found := it.Valid()
			it.Close()
			if found {
				empty = false
				return nil
			}
		}
		return nil
	})
	return empty, err
}
