package hub

import (
	"context"

	"github.com/outpost-edge/outpost/store/crdt"
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
// log (see FSM.appendEventsLocked). The events' enqueued time is the
// command's time (the envelope's). Key 2 is retired: it held that time a
// second time. Version 2 adds Digests: each message's protocol.Digest,
// concatenated, computed once by the proposer rather than by every node
// (a version 1 entry has none: the FSM computes them). Version 3 (nested
// edges) stores each event's edge path: the message's EdgePath and the
// sending edge; an older entry stores none, as the hub that wrote it did.
type appendEvents struct {
	Edge    string            `cbor:"1,keyasint"`
	Frame   protocol.Messages `cbor:"3,keyasint"`
	Digests []byte            `cbor:"4,keyasint,omitempty"`
	// Version is the entry's (decodeCommand sets it): what its apply does.
	Version uint64 `cbor:"-"`
}

// withDigests returns c with the digests of its messages.
func (c appendEvents) withDigests() (appendEvents, error) {
	c.Digests = make([]byte, 0, len(c.Frame.Msgs)*digestSize)
	for _, msg := range c.Frame.Msgs {
		d, err := protocol.Digest(msg)
		if err != nil {
			return c, err
		}
		c.Digests = append(c.Digests, d...)
	}
	return c, nil
}

// digest is message i's digest: the proposer's, or computed now.
func (c appendEvents) digest(i int) ([]byte, error) {
	if c.Digests == nil {
		return protocol.Digest(c.Frame.Msgs[i])
	}
	return c.Digests[i*digestSize : (i+1)*digestSize], nil
}

// mergeTwins merges an edge's twin delta.
type mergeTwins struct {
	Edge  string     `cbor:"1,keyasint"`
	Batch twin.Batch `cbor:"2,keyasint"`
}

// ackPull records what an edge's pull acknowledges: its twin version
// vector (for tombstone GC) and, per device, the highest cloud-to-device
// seq it holds (those messages leave the queue).
type ackPull struct {
	Edge     string            `cbor:"1,keyasint"`
	Instance string            `cbor:"2,keyasint"`
	VV       crdt.VV           `cbor:"3,keyasint"`
	C2D      map[string]uint64 `cbor:"4,keyasint,omitempty"`
}

// gcTwins collects the named twins' stable tombstones (twin.Store.GCTwins).
type gcTwins struct {
	IDs []string `cbor:"1,keyasint"`
}

// apply runs one command on the state and wakes the edges' pulls.
func (h *Hub) apply(ctx context.Context, cmd any) error {
	_, err := h.applyResult(ctx, cmd)
	return err
}

// applyResult encodes cmd at the hub's time and applies the entry through
// the FSM: the one code path a replicated log will also take.
func (h *Hub) applyResult(ctx context.Context, cmd any) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	entry, err := encodeCommand(cmd, h.opts.Now().UnixMilli())
	if err != nil {
		return nil, err
	}
	var res any
	if h.opts.Clustered {
		res, err = h.proposeCluster(ctx, entry)
	} else {
		h.mu.Lock()
		if h.recordEntry != nil {
			h.recordEntry(entry)
		}
		res, err = h.fsm.Apply(entry)
		h.mu.Unlock()
	}
	switch cmd.(type) {
	case appendEvents, expireEvents, expireC2D, ackPull, gcTwins, setPresence, setRouteCursors,
		putJob, jobProgress, cancelJob, expireJobs: // nothing an edge pulls
	default:
		if err == nil {
			h.wake()
		}
	}
	return res, err
}
