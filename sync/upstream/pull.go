package upstream

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// c2dKey holds, per device, the highest hub C2D sequence number stored in
// the edge's queue: l 'r' <device> 0 → u64.
func c2dKey(device string) []byte { return kv.AppendString([]byte{kv.PrefixLink, 'r'}, device) }

// presenceDebounce gathers a burst of connections (a gateway's devices
// coming back after a power cut) into one report.
const presenceDebounce = time.Second

// presence is one session of the presence loop: each change of the
// connected clients is reported as it happens, a burst in one report.
func (l *Link) presence(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.opts.PresenceChanged:
		}
		if !sleepCtx(ctx, presenceDebounce) {
			return nil
		}
		report, ack := l.opts.Presence(false)
		if len(report) == 0 {
			continue
		}
		var out struct{}
		if err := l.post(ctx, protocol.PathPresence, &protocol.PresenceReport{Instance: l.instance, Presence: report}, &out, l.opts.RequestTimeout); err != nil {
			return err
		}
		ack()
	}
}

// pull is one session of the pull loop: long polls that bring twin
// changes, identities, cloud-to-device messages and method calls.
func (l *Link) pull(ctx context.Context) error {
	hub, cursors, err := l.loadC2D()
	if err != nil {
		return err
	}
	scope := ""
	full := true // the first pull of a session tells every connected client
	for {
		p := protocol.Pull{Instance: l.instance, TwinVV: l.opts.Twins.VV(), Scope: scope, C2D: cursors, Hub: hub,
			WaitMs: l.opts.PullWait.Milliseconds(), Backlog: l.backlog()}
		if l.opts.Children != nil {
			p.Children = l.opts.Children()
		}
		ack := func() {}
		if l.opts.Presence != nil {
			p.Presence, ack = l.opts.Presence(full)
			p.PresenceFull = full
		}
		var push protocol.Push
		if err := l.post(ctx, protocol.PathPull, &p, &push, l.opts.RequestTimeout+l.opts.PullWait); err != nil {
			return err
		}
		ack()
		full = false
		if push.Hub != hub {
			// A new hub (or one whose store was replaced): its sequence
			// numbers start afresh.
			if err := l.resetC2D(ctx, push.Hub); err != nil {
				return err
			}
			hub, cursors = push.Hub, map[string]uint64{}
		}
		if err := l.apply(ctx, push, cursors); err != nil {
			return err
		}
		if push.HasScope && !push.TwinsMore {
			scope = push.Scope
		}
	}
}

func (l *Link) apply(ctx context.Context, push protocol.Push, cursors map[string]uint64) error {
	var ids []identity.Identity
	if push.HasScope {
		ids = l.acceptable(protocol.StoreIdentities(push.Identities))
		if err := l.applyScope(ctx, ids, cursors); err != nil {
			return err
		}
	}
	if b := l.sameGeneration(push); len(b.Twins) > 0 || len(b.Commits) > 0 {
		changes, err := l.opts.Twins.ApplyDelta(ctx, b)
		if err != nil {
			return fmt.Errorf("twin delta from the hub: %w", err)
		}
		l.twinsDown.Add(1)
		l.opts.Target.TwinChanges(changes)
	}
	if push.HasScope && !push.TwinsMore {
		// Every twin in scope is now as the hub has it, empty ones too.
		for _, id := range ids {
			if _, err := l.opts.Twins.EnsureGeneration(ctx, id.ID(), id.Generation); err != nil {
				return err
			}
		}
	}
	if l.plausible("pull", push.TwinVV) {
		if err := l.ackHub(ctx, push.Hub, push.TwinVV); err != nil {
			return err
		}
	}
	for _, m := range push.C2D {
		if m.Seq <= cursors[m.Device] {
			continue
		}
		// It waits for its device as long as it would at the hub, never forever.
		msg := queue.Message{ID: m.ID, Props: m.Props, Sys: m.Sys, Body: m.Body, TTL: protocol.C2DTTL}
		if err := l.opts.Target.SendC2D(ctx, m.Device, msg); err != nil {
			return fmt.Errorf("store cloud-to-device message for %s: %w", m.Device, err)
		}
		cursors[m.Device] = m.Seq
		if err := l.opts.DB.Commit(ctx, kv.Set(c2dKey(m.Device), kv.AppendUint64(nil, m.Seq))); err != nil {
			return err
		}
		l.c2d.Add(1)
	}
	for _, mc := range push.Methods {
		l.calls.Add(1)
		go func() {
			defer l.calls.Done()
			l.invoke(ctx, mc)
		}()
	}
	return nil
}

// invoke runs a method call and posts the answer.
func (l *Link) invoke(ctx context.Context, mc protocol.MethodCall) {
	l.methods.Add(1)
	r := l.opts.Target.InvokeMethod(ctx, mc.Target, mc.Name, mc.Payload, time.Duration(mc.TimeoutMs)*time.Millisecond)
	r.ID = mc.ID
	var out struct{}
	err := l.post(ctx, protocol.PathMethods, &r, &out, l.opts.RequestTimeout)
	// A node that failed under the answer: the next node takes it.
	for tries := 1; tries < len(l.nodes) && isFreshSwitch(err); tries++ {
		err = l.post(ctx, protocol.PathMethods, &r, &out, l.opts.RequestTimeout)
	}
	if err != nil {
		l.log.Warn("method answer not delivered to the hub", "target", mc.Target, "method", mc.Name, "err", err)
	}
}

// hubKey holds the hub incarnation the C2D cursors count in.
var hubKey = []byte{kv.PrefixLink, 'h'}

// resetC2D forgets the C2D cursors of another hub incarnation.
func (l *Link) resetC2D(ctx context.Context, hub string) error {
	_, old, err := l.loadC2D()
	if err != nil {
		return err
	}
	ops := []kv.Op{kv.Set(hubKey, []byte(hub))}
	for dev := range old {
		ops = append(ops, kv.Del(c2dKey(dev)))
	}
	return l.opts.DB.Commit(ctx, ops...)
}

func (l *Link) loadC2D() (string, map[string]uint64, error) {
	out := map[string]uint64{}
	var hub string
	prefix := []byte{kv.PrefixLink, 'r'}
	err := l.opts.DB.View(func(txn *badger.Txn) error {
		if item, err := txn.Get(hubKey); err == nil {
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			hub = string(v)
		} else if err != badger.ErrKeyNotFound {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			dev := string(k[len(prefix) : len(k)-1])
			err := it.Item().Value(func(v []byte) error {
				if len(v) == 8 {
					out[dev] = binary.BigEndian.Uint64(v)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return hub, out, err
}

// backlog is the number of messages waiting in the $upstream queues.
func (l *Link) backlog() int64 {
	var n int64
	for _, q := range l.queues {
		n += q.Stats().Depth
	}
	return n
}
