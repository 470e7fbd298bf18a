package hub

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/kv"
)

// Message routing (sync/hub/egress) hands the event log to streaming
// engines, one cursor per endpoint: the seq of the last event the endpoint
// acknowledged. The cursors are state of the state machine, so a restarted
// hub, or a cluster's next leader, resumes where the last delivery was
// acknowledged (at least once: what was delivered after the last commit is
// delivered again).
//
//	m h e <endpoint> → cursor (u64)

var routeCursorPrefix = []byte{kv.PrefixMeta, 'h', 'e'}

func routeCursorKey(endpoint string) []byte {
	return append(slices.Clip(routeCursorPrefix), endpoint...)
}

// setRouteCursors moves endpoints' cursors forward; a cursor never moves
// back (a deposed leader's late commit cannot undo its successor's).
type setRouteCursors struct {
	Cursors map[string]uint64 `cbor:"1,keyasint"`
}

func (f *FSM) setRouteCursorsLocked(ctx context.Context, c setRouteCursors) error {
	old, err := f.RouteCursors()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(c.Cursors))
	for name := range c.Cursors {
		names = append(names, name)
	}
	slices.Sort(names) // the ops in one order on every node
	var ops []kv.Op
	for _, name := range names {
		if name == "" {
			return fmt.Errorf("%w: a route cursor needs an endpoint name", ErrInvalid)
		}
		if v := c.Cursors[name]; v > old[name] {
			ops = append(ops, putUint(routeCursorKey(name), v))
		}
	}
	if len(ops) == 0 {
		return nil
	}
	return f.db.Commit(ctx, ops...)
}

// RouteCursors returns every endpoint's cursor.
func (f *FSM) RouteCursors() (map[string]uint64, error) {
	out := map[string]uint64{}
	err := f.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: routeCursorPrefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			name := string(it.Item().Key()[len(routeCursorPrefix):])
			err := it.Item().Value(func(v []byte) error {
				if len(v) != 8 {
					return fmt.Errorf("route cursor %q is %d bytes, want 8", name, len(v))
				}
				out[name] = binary.BigEndian.Uint64(v)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read route cursors: %w", err)
	}
	return out, nil
}

// RouteCursors returns every routing endpoint's committed cursor.
func (h *Hub) RouteCursors() (map[string]uint64, error) { return h.fsm.RouteCursors() }

// SetRouteCursors commits routing endpoints' cursors through the state
// machine (on a cluster, the leader only: ErrNotLeader elsewhere).
func (h *Hub) SetRouteCursors(ctx context.Context, cursors map[string]uint64) error {
	return h.apply(ctx, setRouteCursors{Cursors: cursors})
}

// Leads reports whether this node delivers what the hub hands on (routed
// events): always for a single hub, the leader's job on a cluster.
func (h *Hub) Leads() bool { return h.leads() }

// EventsAppended returns a channel closed when events are appended after
// the call (or the hub stops, or a restore replaces the log).
func (h *Hub) EventsAppended() <-chan struct{} { return h.events().wait() }

// AddMetrics has /metrics append what write writes (Prometheus text).
func (h *Hub) AddMetrics(write func(w io.Writer)) {
	h.extraMu.Lock()
	h.extraMetrics = append(h.extraMetrics, write)
	h.extraMu.Unlock()
}
