package hub

import (
	"context"
	"fmt"
	"slices"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/twin"
)

// deleteIdentitiesLocked removes identities with everything that belongs
// to them: the twin, the cloud-to-device queue of a device, and, for an
// edge device, what GC knew of its replica. A device created again under
// the same id gets a new generation and starts with an empty twin and
// queue, as on IoT Hub.
func (f *FSM) deleteIdentitiesLocked(ctx context.Context, c deleteIdentities) error {
	// The answer comes from the state the command applies to, not from the
	// proposer's look before: of two deletes at once, one finds nothing.
	if len(c.IDs) > 0 {
		if _, ok, _ := f.ids.Get(c.IDs[0]); !ok {
			return fmt.Errorf("%w: %q is not registered", ErrNotFound, c.IDs[0])
		}
	}
	for _, id := range f.withModules(c.IDs) {
		old, _, _ := f.ids.Get(id)
		if err := f.ids.Delete(ctx, id); err != nil {
			return err
		}
		removed, err := f.twins.Delete(ctx, id)
		if err != nil {
			return fmt.Errorf("delete the twin of %q: %w", id, err)
		}
		if err := f.db.Commit(ctx, kv.Del(presenceKey(id)), kv.Del(deployedKey(id))); err != nil {
			return err
		}
		purged := 0
		if dev, mod, _ := identity.SplitID(id); mod == "" {
			if q, ok := f.queues.Lookup("c2d/" + dev); ok {
				if purged, err = q.Purge(ctx); err != nil {
					return fmt.Errorf("delete the cloud-to-device queue of %q: %w", id, err)
				}
			}
			if old.Edge {
				if err := f.twins.Forget(ctx, dev); err != nil {
					return err
				}
			}
		}
		if removed {
			f.metrics.twinsRemoved.Add(1)
		}
		f.metrics.c2dPurged.Add(int64(purged))
		f.log.Info("identity deleted with its twin and queues", "id", id, "generation", old.Generation, "twin_removed", removed, "c2d_purged", purged)
	}
	return nil
}

// gcWork is how many twins one GC round looks at: GC runs after every
// pull and twin merge, so a round must stay short.
const gcWork = 32

// withModules adds to ids the modules of each device in it that the
// state holds (a module created after the proposer listed them goes too).
func (f *FSM) withModules(ids []string) []string {
	out := slices.Clone(ids)
	all, _ := f.ids.List()
	for _, id := range ids {
		if _, mod, _ := identity.SplitID(id); mod != "" {
			continue
		}
		for _, m := range all {
			if m.ModuleID != "" && m.DeviceID == id && !slices.Contains(out, m.ID()) {
				out = append(out, m.ID())
			}
		}
	}
	return out
}

// collectGarbage drops the twin tombstones every replica has acknowledged
// (crdt.Stable): a twin's members are the hub and the top edge of the
// tree whose scope holds it (twinMembers), none but the hub when no edge
// does. Which twins a round looks at is chosen here; the command removes
// what the state makes stable.
func (h *Hub) collectGarbage(ctx context.Context) {
	if ctx.Err() != nil || !h.leads() || h.twins().GCBacklog() == 0 {
		return
	}
	if err := h.apply(ctx, gcTwins{IDs: h.twins().GCTake(gcWork)}); err != nil {
		h.log.Warn("twin GC", "err", err)
	}
}

func (f *FSM) gcTwinsLocked(ctx context.Context, c gcTwins) error {
	n, err := f.twins.GCTwins(ctx, f.twinMembers(), c.IDs)
	f.metrics.twinGC.Add(int64(n))
	return err
}

// twinMembers names the member of each twin: the top edge of the tree
// whose scope holds it, the edge that pulls from the hub and acknowledges
// its version vector (a child edge never does; its parent keeps
// tombstones until its own children have them). None when no edge serves
// the twin. Lookups in the FSM's tree, not a scan: GC runs after every
// pull and twin merge while tombstones wait.
func (f *FSM) twinMembers() twin.Members {
	t := f.tree()
	return func(id string) []string {
		if e, ok := t.top(id); ok {
			return []string{e}
		}
		return nil
	}
}
