package upstream

import (
	"context"
	"fmt"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// applyScope replaces the identity cache with the identities the hub says
// are in this edge's scope. An identity no longer there was deleted (or
// moved away): its connection is closed, and its twin and queues are
// removed. One with another generation was deleted and created again: its
// connection is closed, its queues emptied and its twin started afresh, so
// nothing of the old device reaches the new one. Everything removed is
// counted (Status) and logged.
func (l *Link) applyScope(ctx context.Context, ids []identity.Identity, cursors map[string]uint64) error {
	before, _ := l.opts.Identities.List()
	if err := l.opts.Identities.Replace(ctx, ids); err != nil {
		return fmt.Errorf("identities from the hub: %w", err)
	}
	now := make(map[string]identity.Identity, len(ids))
	for _, id := range ids {
		now[id.ID()] = id
	}
	for _, id := range before {
		n, ok := now[id.ID()]
		switch {
		case !ok:
			l.opts.Target.Disconnect(id.ID(), "the identity was removed at the hub")
			if err := l.forget(ctx, id.ID(), id.Generation, cursors); err != nil {
				return err
			}
		case n.Generation != id.Generation && id.Generation != "":
			l.opts.Target.Disconnect(id.ID(), "the identity was deleted and created again at the hub")
		case n.Status != identity.Enabled && id.Status == identity.Enabled:
			l.opts.Target.Disconnect(id.ID(), "the identity was disabled at the hub")
		}
	}
	for _, id := range ids {
		if err := l.renew(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// acceptable returns the identities this edge accepts: one the identity
// cache refuses (an id with '+' or '#' from a hub that allowed them, a
// broken record) is skipped and logged, without a key, and the others are
// applied, so one bad identity does not stop the edge from syncing.
func (l *Link) acceptable(ids []identity.Identity) []identity.Identity {
	out := make([]identity.Identity, 0, len(ids))
	for _, id := range ids {
		if err := id.Validate(); err != nil {
			if ok, held := l.refusedLog.Allow("identity"); ok {
				l.log.Warn("identity from the hub skipped: this edge does not accept it", "err", err, "skipped_since_last_logged", held)
			}
			continue
		}
		out = append(out, id)
	}
	return out
}

// forget removes the twin, queues and C2D cursor of a deleted identity.
func (l *Link) forget(ctx context.Context, id, gen string, cursors map[string]uint64) error {
	removed, err := l.opts.Twins.Delete(ctx, id)
	if err != nil {
		return fmt.Errorf("remove the twin of deleted identity %s: %w", id, err)
	}
	purged, err := l.opts.Target.PurgeQueues(ctx, id)
	if err != nil {
		return fmt.Errorf("remove the queues of deleted identity %s: %w", id, err)
	}
	if _, ok := cursors[id]; ok {
		if err := l.opts.DB.Commit(ctx, kv.Del(c2dKey(id))); err != nil {
			return fmt.Errorf("remove the C2D cursor of deleted device %s: %w", id, err)
		}
		delete(cursors, id)
	}
	if removed {
		l.removed.Add(1)
	}
	l.purged.Add(int64(purged))
	l.log.Info("identity deleted at the hub: its twin and queued messages are removed", "id", id, "generation", gen,
		"twin_removed", removed, "messages_purged", purged)
	return nil
}

// renew starts afresh the twin of an identity created again under the same
// id (another generation) and empties what waited for the old one.
func (l *Link) renew(ctx context.Context, id identity.Identity) error {
	old, err := l.opts.Twins.Generation(id.ID())
	if err != nil || old == "" || id.Generation == "" || old == id.Generation {
		return err
	}
	if _, err := l.opts.Twins.EnsureGeneration(ctx, id.ID(), id.Generation); err != nil {
		return fmt.Errorf("start the twin of %s afresh: %w", id.ID(), err)
	}
	purged, err := l.opts.Target.PurgeQueues(ctx, id.ID())
	if err != nil {
		return fmt.Errorf("remove the queues of %s's old generation: %w", id.ID(), err)
	}
	l.reset.Add(1)
	l.purged.Add(int64(purged))
	l.log.Info("identity created again at the hub: its twin starts afresh and what waited for the old one is removed", "id", id.ID(),
		"old_generation", old, "generation", id.Generation, "messages_purged", purged)
	return nil
}

// sameGeneration returns the push's twin delta without the twins of
// another generation than the one held here (refused, counted, logged).
// The commits stay: the hub's version vector moves on.
func (l *Link) sameGeneration(push protocol.Push) twin.Batch {
	b := twin.Batch{Commits: push.Twins.Commits}
	for _, td := range push.Twins.Twins {
		g := push.Generations[td.ID]
		if local, _ := l.opts.Twins.Generation(td.ID); g != "" && local != "" && local != g {
			l.stale.Add(1)
			l.log.Warn("twin delta from the hub refused: it is for another generation of the identity", "twin", td.ID,
				"generation", g, "local_generation", local)
			continue
		}
		b.Twins = append(b.Twins, td)
	}
	return b
}

// generations names the generation of every twin in b, as held here.
func (l *Link) generations(b twin.Batch) protocol.Generations {
	var out protocol.Generations
	for _, td := range b.Twins {
		if g, _ := l.opts.Twins.Generation(td.ID); g != "" {
			if out == nil {
				out = protocol.Generations{}
			}
			out[td.ID] = g
		}
	}
	return out
}

// gcWork bounds the twins one GC round looks at (one round per exchange).
const gcWork = 32

// ackHub records the hub's version vector as its ack and collects the
// tombstones that became stable. An edge's twins have the hub as member,
// and on a parent edge the child whose subtree holds them (Options.Members).
func (l *Link) ackHub(ctx context.Context, hub string, vv crdt.VV) error {
	if hub == "" || vv == nil {
		return nil
	}
	if err := l.opts.Twins.Ack(ctx, "hub", crdt.ReplicaID(hub), vv); err != nil {
		return err
	}
	members := l.opts.Members
	if members == nil {
		members = func(string) []string { return []string{"hub"} }
	}
	n, err := l.opts.Twins.GC(ctx, members, gcWork)
	l.collected.Add(int64(n))
	if err != nil {
		return fmt.Errorf("twin gc: %w", err)
	}
	return nil
}
