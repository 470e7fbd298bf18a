package hub

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/kv"
)

// The cluster's own records in the state machine: where each node serves
// (its raft and API addresses, so any node can send a request to the
// leader's API) and the owner key every node signs and checks with.

var (
	nodePrefix  = []byte{kv.PrefixMeta, 'h', 'n'}
	ownerKeyKey = []byte{kv.PrefixMeta, 'h', 'o'}
)

func nodeKey(id string) []byte { return append(slices.Clip(nodePrefix), id...) }

// setNode records (or moves) a node of the cluster.
type setNode struct {
	ID   string `cbor:"1,keyasint"`
	Raft string `cbor:"2,keyasint"`
	API  string `cbor:"3,keyasint"` // base URL of its REST API and edge link
}

// removeNode forgets a node that left.
type removeNode struct {
	ID string `cbor:"1,keyasint"`
}

// setOwner records the owner key, once: the first node's. A later one is
// refused (a key rotation is a command of its own, not built).
type setOwner struct {
	Key []byte `cbor:"1,keyasint"`
}

// NodeInfo is where one node of the cluster serves.
type NodeInfo struct {
	ID   string `json:"id"`
	Raft string `json:"raft"`
	API  string `json:"api"`
}

func (f *FSM) setNodeLocked(ctx context.Context, c setNode) error {
	if c.ID == "" || c.API == "" {
		return fmt.Errorf("%w: a node needs an id and an API URL", ErrInvalid)
	}
	v, err := kv.Marshal(c)
	if err != nil {
		return err
	}
	return f.db.Commit(ctx, kv.Set(nodeKey(c.ID), v))
}

func (f *FSM) setOwnerLocked(ctx context.Context, c setOwner) error {
	old, err := f.OwnerKey()
	if err != nil {
		return err
	}
	switch {
	case len(c.Key) == 0:
		return fmt.Errorf("%w: empty owner key", ErrInvalid)
	case old != nil && !bytes.Equal(old, c.Key):
		return fmt.Errorf("%w: the cluster already has another owner key", ErrInvalid)
	case old != nil:
		return nil
	}
	return f.db.Commit(ctx, kv.Set(ownerKeyKey, c.Key))
}

// OwnerKey is the cluster's owner key (nil before the first node set it).
func (f *FSM) OwnerKey() ([]byte, error) {
	var key []byte
	err := f.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(ownerKeyKey)
		if err == badger.ErrKeyNotFound {
			return nil
		}
		if err != nil {
			return err
		}
		key, err = item.ValueCopy(nil)
		return err
	})
	return key, err
}

// Nodes lists the nodes the state machine knows, by id.
func (f *FSM) Nodes() ([]NodeInfo, error) {
	var out []NodeInfo
	err := f.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: nodePrefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var n setNode
			if err := it.Item().Value(func(v []byte) error { return kv.Unmarshal(v, &n) }); err != nil {
				return err
			}
			out = append(out, NodeInfo{ID: n.ID, Raft: n.Raft, API: n.API})
		}
		return nil
	})
	return out, err
}

// SetNode records where a node of the cluster serves (leader only).
func (h *Hub) SetNode(ctx context.Context, n NodeInfo) error {
	return h.apply(ctx, setNode{ID: n.ID, Raft: n.Raft, API: n.API})
}

// RemoveNode forgets a node that left the cluster (leader only).
func (h *Hub) RemoveNode(ctx context.Context, id string) error {
	return h.apply(ctx, removeNode{ID: id})
}

// SetOwnerKey records the cluster's owner key, once (leader only).
func (h *Hub) SetOwnerKey(ctx context.Context, key []byte) error {
	return h.apply(ctx, setOwner{Key: key})
}
