package hub

import (
	"context"
	"slices"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// Connection state of devices and modules, as their edges report it with
// their pulls (IoT Hub's connectionState and lastActivityTime): one record
// per identity in the state machine, so every node of a cluster shows it.

var presencePrefix = []byte{kv.PrefixMeta, 'h', 'p'}

func presenceKey(id string) []byte { return append(slices.Clip(presencePrefix), id...) }

// presenceRecord is what the hub keeps of one identity's connection.
type presenceRecord struct {
	Connected bool  `cbor:"1,keyasint,omitempty"`
	Since     int64 `cbor:"2,keyasint,omitempty"` // unix ms the state began
	Activity  int64 `cbor:"3,keyasint,omitempty"` // unix ms of its last activity
}

// setPresence records what an edge reported of its clients. With Full,
// the list is every client connected to it: an identity of its scope the
// hub holds as connected and the list lacks is disconnected (at the
// command's time).
type setPresence struct {
	Edge string              `cbor:"1,keyasint"`
	Full bool                `cbor:"2,keyasint,omitempty"`
	IDs  []protocol.Presence `cbor:"3,keyasint,omitempty"`
}

func (f *FSM) setPresenceLocked(ctx context.Context, c setPresence) error {
	inScope, err := f.inScope(c.Edge)
	if err != nil {
		return err
	}
	at := f.at.Load()
	var ops []kv.Op
	put := func(id string, r presenceRecord) error {
		v, err := kv.Marshal(r)
		if err != nil {
			return err
		}
		ops = append(ops, kv.Set(presenceKey(id), v))
		return nil
	}
	listed := make(map[string]bool, len(c.IDs))
	for _, p := range c.IDs {
		if !inScope(p.ID) {
			continue // not its to report (moved away meanwhile)
		}
		if _, ok, _ := f.ids.Get(p.ID); !ok {
			continue
		}
		listed[p.ID] = true
		old, _ := f.presence(p.ID)
		r := presenceRecord{Connected: p.Connected, Since: p.Since, Activity: max(p.Activity, old.Activity)}
		if r.Since == 0 {
			r.Since = at
		}
		if err := put(p.ID, r); err != nil {
			return err
		}
	}
	if c.Full {
		err := f.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: presencePrefix, PrefetchValues: true})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				id := string(it.Item().Key()[len(presencePrefix):])
				if listed[id] || !inScope(id) {
					continue
				}
				var r presenceRecord
				if err := it.Item().Value(func(v []byte) error { return kv.Unmarshal(v, &r) }); err != nil {
					return err
				}
				if r.Connected {
					r.Connected, r.Since = false, at
					if err := put(id, r); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if len(ops) == 0 {
		return nil
	}
	return f.db.Commit(ctx, ops...)
}

// presence reads one identity's record (zero when never reported).
func (f *FSM) presence(id string) (presenceRecord, error) {
	var r presenceRecord
	_, err := f.get(presenceKey(id), &r)
	return r, err
}

// presence is an identity's connection state for the service API.
func (h *Hub) presence(id string) Presence {
	r, _ := h.fsm.presence(id)
	return Presence{Connected: r.Connected, Since: r.Since, Activity: r.Activity}
}

// notePresence records what a pull reported of the edge's clients.
func (h *Hub) notePresence(ctx context.Context, edge string, p protocol.Pull) error {
	if len(p.Presence) == 0 && !p.PresenceFull {
		return nil
	}
	return h.apply(ctx, setPresence{Edge: edge, Full: p.PresenceFull, IDs: p.Presence})
}

// connectedDevices counts the devices (not modules) held as connected.
func (f *FSM) connectedDevices() (int, error) {
	n := 0
	err := eachRecord(f, presencePrefix, func(id string, r presenceRecord) error {
		if r.Connected && !strings.Contains(id, "/") {
			n++
		}
		return nil
	})
	return n, err
}

// presenceAll reads every presence record, for a pass over the fleet.
func (f *FSM) presenceAll() map[string]Presence {
	out := map[string]Presence{}
	_ = eachRecord(f, presencePrefix, func(id string, r presenceRecord) error {
		out[id] = Presence{Connected: r.Connected, Since: r.Since, Activity: r.Activity}
		return nil
	})
	return out
}

// eachRecord calls fn with every record under prefix, in key order: the
// key after the prefix and the record decoded.
func eachRecord[T any](f *FSM, prefix []byte, fn func(key string, v T) error) error {
	return f.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var v T
			if err := it.Item().Value(func(b []byte) error { return kv.Unmarshal(b, &v) }); err != nil {
				return err
			}
			if err := fn(string(it.Item().Key()[len(prefix):]), v); err != nil {
				return err
			}
		}
		return nil
	})
}
