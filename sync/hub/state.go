package hub

import (
	"context"
	"fmt"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// The commands of the hub's state machine. Each is applied whole, one at a
// time, and carries everything it needs (keys and scopes are generated
// before the command is made).

// putIdentities adds or replaces identities and makes sure their twins
// exist.
type putIdentities struct {
	IDs []identity.Identity `cbor:"1,keyasint"`
}

// deleteIdentities removes identities.
type deleteIdentities struct {
	IDs []string `cbor:"1,keyasint"`
}

// appendEvents stores a batch of an edge's upstream queue in the event
// log (see Hub.appendEventsLocked).
type appendEvents struct {
	Edge  string            `cbor:"1,keyasint"`
	At    int64             `cbor:"2,keyasint"` // unix ms: the events' enqueued time
	Frame protocol.Messages `cbor:"3,keyasint"`
}

// mergeTwins merges an edge's twin delta.
type mergeTwins struct {
	Edge  string     `cbor:"1,keyasint"`
	Batch twin.Batch `cbor:"2,keyasint"`
}

// apply runs one command on the state and wakes the edges' pulls.
func (h *Hub) apply(ctx context.Context, cmd any) error {
	_, err := h.applyResult(ctx, cmd)
	return err
}

// applyResult is apply for commands that answer something.
func (h *Hub) applyResult(ctx context.Context, cmd any) (any, error) {
	h.mu.Lock()
	var res any
	var err error
	switch c := cmd.(type) {
	case appendEvents:
		res, err = h.appendEventsLocked(ctx, c)
	case mergeTwins:
		_, err = h.twins.ApplyDelta(ctx, c.Batch)
	case expireEvents:
		res, err = h.expireEventsLocked(ctx, c)
	default:
		err = h.applyLocked(ctx, cmd)
	}
	h.mu.Unlock()
	switch cmd.(type) {
	case appendEvents, expireEvents: // nothing an edge pulls
	default:
		if err == nil {
			h.wake()
		}
	}
	return res, err
}

func (h *Hub) applyLocked(ctx context.Context, cmd any) error {
	switch c := cmd.(type) {
	case putIdentities:
		if err := h.ids.Put(ctx, c.IDs...); err != nil {
			return err
		}
		for _, id := range c.IDs {
			if _, err := h.twins.EnsureGeneration(ctx, id.ID(), id.Generation); err != nil {
				return err
			}
		}
		return nil
	case deleteIdentities:
		return h.deleteIdentitiesLocked(ctx, c)
	case writeTwin:
		return h.writeTwinLocked(ctx, c)
	case applyConfiguration:
		return h.applyConfigurationLocked(ctx, c)
	case sendC2D:
		return h.sendC2DLocked(ctx, c)
	default:
		return fmt.Errorf("hub state machine: unknown command %T", cmd)
	}
}
