package edge

import (
	"fmt"
	"path/filepath"

	"github.com/outpost-edge/outpost/broker/route"
	"github.com/outpost-edge/outpost/cmd/internal/localapi"
	"github.com/outpost-edge/outpost/store/disk"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/queue"
)

const (
	// DefaultQueueShare is the share of the data filesystem (percent) all
	// queues may hold together when --max-queue-bytes is not given.
	DefaultQueueShare = 40
	// managementBudget is kept for twin writes, identity refreshes and
	// deployments once telemetry is refused: they are small, and they keep
	// the edge manageable on a full disk.
	managementBudget = 4 << 20
)

// kvOptions are the store's options, sized from the memory budget; the
// disk monitor's allowance follows from them.
func (e *edge) kvOptions() kv.Options {
	return e.mem.kvSizes(kv.Options{Durability: e.cfg.Durability, Logger: e.cfg.Logger})
}

// openDisk starts the disk monitor before the store: on a full disk it
// releases the ballast first, so Badger can open, replay and flush.
func (e *edge) openDisk() error {
	allowance := kv.Allowance(e.kvOptions())
	m, err := disk.Open(disk.Options{Dir: e.cfg.DataDir, Store: filepath.Join(e.cfg.DataDir, "store"),
		Allowance: allowance, Budget: managementBudget, Ballast: allowance, FillHoles: true, Logger: e.cfg.Logger})
	if err != nil {
		return fmt.Errorf("data directory %s: %w", e.cfg.DataDir, err)
	}
	e.disk = m
	return nil
}

// queueCap is the cap on all queues together: the deployment's
// storeAndForwardConfiguration.maxBytes, else --max-queue-bytes, else a
// share of the data filesystem.
func (e *edge) queueCap(routes *route.Config) int64 {
	if routes != nil && routes.MaxBytes > 0 {
		return routes.MaxBytes
	}
	if e.cfg.MaxQueueBytes > 0 {
		return e.cfg.MaxQueueBytes
	}
	share := e.cfg.MaxQueueShare
	if share <= 0 {
		share = DefaultQueueShare
	}
	return e.disk.Status().Size / 100 * int64(share)
}

// setQueueLimits puts the cap on all queues and the overflow policy of a
// deployment's routes in force.
func (e *edge) setQueueLimits(routes *route.Config) {
	e.queues.SetTotalMaxBytes(e.queueCap(routes))
	e.overflow.Store(overflowOf(routes, e.cfg.Overflow))
}

// applyRoutes puts a deployment's routes, policy and MQTT accounts in
// force.
func (e *edge) applyRoutes(c edgeHubConfig) {
	e.broker.SetRoutes(c.routes)
	e.broker.SetPolicy(c.policy)
	e.broker.SetAccounts(c.accounts)
	e.setQueueLimits(c.routes)
}

// overflowOf is what a full queue does when its route sets nothing: the
// deployment's storeAndForwardConfiguration.overflow, else def (--overflow).
func overflowOf(routes *route.Config, def queue.Overflow) string {
	if routes != nil && routes.Overflow != "" {
		return routes.Overflow
	}
	return def.String()
}

func (e *edge) diskStatus() localapi.DiskStatus {
	st := e.disk.Status()
	bytes, _, maxBytes := e.queues.Totals()
	ov, _ := e.overflow.Load().(string)
	return localapi.DiskStatus{State: st.State, Size: st.Size, Free: st.Free, Holes: st.Holes, Reserve: st.Reserve,
		Allowance: st.Allowance, Ballast: st.Ballast, BallastHeld: st.Ballast > 0,
		MaxQueueBytes: maxBytes, QueueBytes: bytes, Overflow: ov,
		RefusedTelemetry: st.RefusedTelemetry, RefusedWrites: st.RefusedWrites}
}
