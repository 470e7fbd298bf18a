package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

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
	if !l.plausible("welcome", hubVV) {
		hubVV = nil // send every write of this edge's; the hub takes each once
	} else if err := l.ackHub(ctx, w.Hub, w.TwinVV); err != nil {
		return err
	}
	for {
		changed := l.opts.Twins.Changed()
		// The hub takes only this edge's writes and those of the edges
		// below it (nested edges): claim every other origin as covered,
		// so the delta holds only those.
		peer := hubVV.Clone()
		if peer == nil {
			peer = crdt.VV{}
		}
		for o, s := range l.opts.Twins.VV() {
			if !twin.IsEdgeReplica(o, l.opts.Edge.DeviceID) && (l.opts.Forwards == nil || !l.opts.Forwards(o)) {
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
				if he := (*HubError)(nil); errors.As(err, &he) && he.Status == http.StatusNotImplemented {
					return l.twinsNotServed(ctx, he)
				}
				return err
			}
			l.setTwinsNotServed("")
			l.twinsUp.Add(1)
			if !l.plausible("twins ack", ack.TwinVV) {
				// What was sent is not known to have arrived: a new
				// session sends it again.
				return fmt.Errorf("%w: the acknowledgement of twin changes", errIgnoredAnswer)
			}
			hubVV = ack.TwinVV
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

// plausible reports whether a version vector from the hub claims no more of
// this edge's own twin writes than the edge has made. One that claims more
// is ignored (counted, logged at most every 10 s): believed, it would keep
// the edge from sending those writes and let it collect tombstones the hub
// never saw.
func (l *Link) plausible(what string, vv crdt.VV) bool {
	self := l.opts.Twins.Replica()
	made := l.opts.Twins.VV()[self]
	if vv[self] <= made {
		return true
	}
	l.ignored.Add(1)
	if ok, held := l.ignoredLog.Allow(what); ok {
		l.log.Warn("the hub claims more of this edge's twin writes than it made: its version vector is ignored and the writes are sent again; "+
			"check that --hub-url reaches an outpost hub (and use TLS), or whether this data directory was restored from an older backup",
			"answer", what, "instance", self, "claimed", vv[self], "made", made, "ignored_since_last_logged", held)
	}
	return false
}

// TwinsNotServedRetry is how long the link waits before it offers its twin
// changes again to an upstream that does not take them (501).
var TwinsNotServedRetry = 10 * time.Minute

// twinsNotServed records that the upstream does not take twin changes
// (a parent edge that does not serve them yet), not as a link failure: the
// changes stay, and are offered again after TwinsNotServedRetry.
func (l *Link) twinsNotServed(ctx context.Context, he *HubError) error {
	if l.setTwinsNotServed(he.Message) {
		l.log.Warn("the upstream does not take twin changes; they stay on this edge and are offered again later",
			"upstream", l.hubNames(), "answer", he.Message, "retry_in", TwinsNotServedRetry)
	}
	if !sleepCtx(ctx, TwinsNotServedRetry) {
		return ctx.Err()
	}
	return fmt.Errorf("%w: twin changes not taken by the upstream", errIgnoredAnswer)
}

// setTwinsNotServed sets the status field and reports whether it changed.
func (l *Link) setTwinsNotServed(msg string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	changed := l.status.TwinsNotServed != msg
	l.status.TwinsNotServed = msg
	return changed
}
