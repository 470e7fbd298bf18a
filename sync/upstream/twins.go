package upstream

import (
	"context"
	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/sync/protocol"
)

const twinFieldsPerFrame = 4096

// twins is one session of the twin loop: it sends the edge's own twin
// writes the hub lacks (reported properties), as coalesced deltas since
// the hub's version vector, whenever the local twins change.
func (l *Link) twins(ctx context.Context) error {
	var w protocol.Welcome
	if err := l.post(ctx, protocol.PathHello, &protocol.Hello{Version: protocol.Version, Instance: l.instance}, &w, l.opts.RequestTimeout); err != nil {
		return err
	}
	hubVV := w.TwinVV
	if err := l.ackHub(ctx, w.Hub, w.TwinVV); err != nil {
		return err
	}
	for {
		changed := l.opts.Twins.Changed()
		// The hub takes only this edge's writes: claim every other origin
		// as covered, so the delta holds only ours.
		peer := hubVV.Clone()
		if peer == nil {
			peer = crdt.VV{}
		}
		for o, s := range l.opts.Twins.VV() {
			if !twin.IsEdgeReplica(o, l.opts.Edge.DeviceID) {
				peer[o] = max(peer[o], s)
			}
		}
		b, more, err := l.opts.Twins.Delta(peer, twinFieldsPerFrame)
		if err != nil {
			return err
		}
		if len(b.Twins) > 0 || len(b.Commits) > 0 {
			var ack protocol.TwinsAck
			up := protocol.TwinsUp{Instance: l.instance, Batch: b, Generations: l.generations(b)}
			if err := l.post(ctx, protocol.PathTwins, &up, &ack, l.opts.RequestTimeout); err != nil {
				return err
			}
			hubVV = ack.TwinVV
			l.twinsUp.Add(1)
			if err := l.ackHub(ctx, ack.Hub, ack.TwinVV); err != nil {
				return err
			}
		}
		if more {
			continue
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
