package twin

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/kv"
)

// The other replicas of a twin are its members. Each is named by a stable
// name ("hub" at an edge; the edge's device id at the hub) and is, at any
// time, one replica incarnation. What a member acknowledged decides which
// tombstones are stable (crdt.Stable). Acks are persisted so that GC goes on
// after a restart without waiting for every member to speak again; losing
// them would only delay GC, never make it unsafe.
var metaAcks = []byte{kv.PrefixMeta, 't', 'w', 'a'}

// memberAck holds two acks of one member: Stable, an ack this replica has
// caught up with (it holds everything the member had minted when it sent
// it), and Pending, the oldest newer ack not caught up with yet. Pending is
// kept (not replaced by newer acks) until it is caught up with, so a member
// that writes all the time still lets GC progress.
type memberAck struct {
	Stable  crdt.Ack `cbor:"1,keyasint,omitempty"`
	Pending crdt.Ack `cbor:"2,keyasint,omitempty"`
}

// offer takes a new ack; it reports whether m changed.
func (m *memberAck) offer(a crdt.Ack, local crdt.VV) bool {
	changed := m.promote(local)
	switch {
	case a.Usable(local):
		vv := m.Stable.VV.Clone()
		vv.Merge(a.VV)
		if !vvEqual(vv, m.Stable.VV) || m.Pending.VV != nil {
			m.Stable.VV, m.Pending = vv, crdt.Ack{}
			return true
		}
	case m.Pending.VV == nil:
		m.Pending = a
		return true
	}
	return changed
}

// promote makes Pending the stable ack once this replica has caught up.
func (m *memberAck) promote(local crdt.VV) bool {
	if m.Pending.VV == nil || !m.Pending.Usable(local) {
		return false
	}
	vv := m.Stable.VV.Clone()
	vv.Merge(m.Pending.VV)
	m.Stable.VV, m.Pending = vv, crdt.Ack{}
	return true
}

func vvEqual(a, b crdt.VV) bool { return maps.Equal(a, b) }

// Ack records that member (a stable name) acknowledged vv while it was the
// replica incarnation replica. An ack of a new incarnation replaces what the
// old one acknowledged: the new one holds nothing of it yet.
func (s *Store) Ack(ctx context.Context, member string, replica crdt.ReplicaID, vv crdt.VV) error {
	if member == "" || replica == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.acks[member]
	if !ok || m.Stable.Replica != replica {
		m = memberAck{Stable: crdt.Ack{Replica: replica}}
		ok = false
	}
	if !m.offer(crdt.Ack{Replica: replica, VV: vv.Clone()}, s.vv) && ok {
		return nil
	}
	next := cloneAcks(s.acks)
	next[member] = m
	if err := s.saveAcks(ctx, next); err != nil {
		return fmt.Errorf("record the ack of %s: %w", member, err)
	}
	return nil
}

// Forget drops a member (an edge device deleted at the hub).
func (s *Store) Forget(ctx context.Context, member string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.acks[member]; !ok {
		return nil
	}
	next := cloneAcks(s.acks)
	delete(next, member)
	if err := s.saveAcks(ctx, next); err != nil {
		return fmt.Errorf("forget member %s: %w", member, err)
	}
	return nil
}

// Acked returns the ack of member that GC relies on (tests, status).
func (s *Store) Acked(member string) crdt.Ack {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.acks[member].Stable
	a.VV = a.VV.Clone()
	return a
}

func cloneAcks(m map[string]memberAck) map[string]memberAck {
	out := make(map[string]memberAck, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// saveAcks persists acks and makes them current; s.mu is held.
func (s *Store) saveAcks(ctx context.Context, acks map[string]memberAck) error {
	b, err := kv.Marshal(acks)
	if err != nil {
		return err
	}
	if err := s.db.Commit(ctx, kv.Set(metaAcks, b)); err != nil {
		return err
	}
	s.acks = acks
	return nil
}

func (s *Store) loadAcks() error {
	acks := map[string]memberAck{}
	err := s.db.View(func(txn *badger.Txn) error { return getRecord(txn, metaAcks, &acks) })
	if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
		return fmt.Errorf("load member acks: %w", err)
	}
	s.acks = acks
	return nil
}

// stableFor returns the stability rule for a twin whose members are
// named; s.mu is held. A member never heard from makes nothing stable.
func (s *Store) stableFor(members []string) func(crdt.Dot) bool {
	acks := make([]crdt.Ack, 0, len(members))
	for _, name := range members {
		m := s.acks[name]
		// Persisted with the next ack; losing it only delays GC. A Replicated
		// store keeps its acks as stored: the next ack's write must not
		// depend on whether this replica was re-opened meanwhile.
		if m.promote(s.vv) && !s.opts.Replicated {
			s.acks[name] = m
		}
		acks = append(acks, m.Stable)
	}
	return crdt.Stable(s.vv, acks)
}
