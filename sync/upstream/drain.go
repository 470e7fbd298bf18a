package upstream

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// fairEvery: one batch in this many is taken from the lowest-priority
// queue that has messages, so a busy high-priority route cannot starve the
// others. Within a queue the order is kept.
const fairEvery = 8

// drain is one session of the drain loop: Hello, then batches from the
// $upstream queues until the link fails. A batch is acknowledged in the
// edge's queue only after the hub has stored it; after a failure the
// unacknowledged messages are leased again and sent again (at most the
// batch that was in flight), and the hub recognises what it already holds
// by sequence number and content. The hub's cursors in Welcome are never a
// reason to skip a message: another edge started from a copy of this data
// directory may have moved them.
func (l *Link) drain(ctx context.Context) error {
	defer func() {
		for _, q := range l.queues {
			q.Rewind()
		}
	}()
	var w protocol.Welcome
	if err := l.post(ctx, protocol.PathHello, &protocol.Hello{Version: protocol.Version, Instance: l.instance}, &w, l.opts.RequestTimeout); err != nil {
		return err
	}
	if w.HubTime > 0 {
		l.opts.HubTime(time.UnixMilli(w.HubTime))
	}
	p := &progress{every: l.opts.ProgressEvery}
	// The next batch is leased and encoded while one is in flight: the
	// edge's share of a batch (reading the queue, encoding, compressing)
	// no longer waits for the hub's (decoding, storing). Batches still go
	// one at a time, in order, so the hub stores them in queue order.
	var ahead chan batch
	defer func() {
		if ahead != nil {
			<-ahead // before the queues rewind: no lease may follow the rewind
		}
	}()
	for n := 1; ; n++ {
		var b batch
		if ahead != nil {
			b, ahead = <-ahead, nil
		} else {
			b = l.prepare(n%fairEvery == 0)
		}
		if b.err != nil {
			return b.err
		}
		if b.q == nil {
			l.idle(p)
			if !waitAny(ctx, b.waits) {
				return ctx.Err()
			}
			continue
		}
		ahead = make(chan batch, 1)
		go func(fair bool) { ahead <- l.prepare(fair) }((n+1)%fairEvery == 0)
		if err := l.send(ctx, b); err != nil {
			return err
		}
		l.sentBatch(p, len(b.msgs))
	}
}

// batch is a leased batch of one queue, encoded as the frame that carries
// it; q is nil when every queue was empty: waits are the queues' Wait
// channels taken before the leases, so an append after them wakes the
// drain.
type batch struct {
	q     *queue.Queue
	msgs  []queue.Message
	body  []byte
	enc   string
	waits []<-chan struct{}
	err   error
}

// prepare leases the next batch (see next) and encodes its frame.
func (l *Link) prepare(fair bool) batch {
	b := batch{waits: make([]<-chan struct{}, len(l.queues))}
	for i, q := range l.queues {
		b.waits[i] = q.Wait()
	}
	if b.q, b.msgs, b.err = l.next(fair); b.err != nil || b.q == nil {
		return b
	}
	frame := protocol.Messages{Instance: l.instance, Queue: b.q.Name(), Msgs: make([]protocol.Message, 0, len(b.msgs))}
	for _, m := range b.msgs {
		frame.Msgs = append(frame.Msgs, protocol.Message{Seq: m.Seq, ID: m.ID, Source: m.Source, Props: m.Props, Sys: m.Sys,
			Body: m.Body, EnqueuedAt: m.EnqueuedAt.UnixMilli(), EdgePath: m.EdgePath})
	}
	b.body, b.enc, b.err = protocol.Encode(&frame)
	return b
}

// next leases a batch from the first queue with messages, in priority
// order, or in reverse order when fair is set.
func (l *Link) next(fair bool) (*queue.Queue, []queue.Message, error) {
	for i := range l.queues {
		q := l.queues[i]
		if fair {
			q = l.queues[len(l.queues)-1-i]
		}
		msgs, err := q.Lease(l.opts.BatchMessages, l.opts.BatchBytes)
		if err != nil {
			return nil, nil, err
		}
		if len(msgs) > 0 {
			return q, msgs, nil
		}
	}
	return nil, nil, nil
}

func (l *Link) send(ctx context.Context, b batch) error {
	q, msgs := b.q, b.msgs
	var ack protocol.MessagesAck
	if err := l.postEncoded(ctx, protocol.PathMessages, b.body, b.enc, &ack, l.opts.RequestTimeout); err != nil {
		return err
	}
	if ack.Refused > 0 {
		total := l.refused.Add(int64(ack.Refused))
		if ok, _ := l.refusedLog.Allow(q.Name()); ok {
			l.log.Warn("messages refused by the hub: their device or module was deleted (or created again) since they were sent, or is not in this edge's scope",
				"queue", q.Name(), "refused", ack.Refused, "total", total)
		}
	}
	last := msgs[len(msgs)-1].Seq
	if ack.UpTo != last {
		return l.bogusAck(q.Name(), last, ack.UpTo)
	}
	l.sent.Add(int64(ack.Appended))
	l.batches.Add(1)
	if ack.Collisions > 0 {
		l.collided(q.Name(), ack.Collisions)
	}
	// The next batch goes out while this acknowledgement commits: what a
	// crash loses of it is sent again, and the hub knows it by sequence
	// number (waiting for the commit held the drain to one batch per hub
	// round trip plus one commit).
	return q.AckAsync(last, func(err error) {
		if err == nil {
			return
		}
		if ok, held := l.ackLog.Allow(q.Name()); ok {
			l.log.Warn("the hub stored a batch and removing it from the queue failed: it goes with the next batch's acknowledgement, or is sent again after a restart (the hub keeps one copy)",
				"queue", q.Name(), "up_to", last, "err", err, "failed_since_last_logged", held)
		}
	})
}

// bogusAck turns down an acknowledgement that is not for the batch just
// sent (a hub always acknowledges a whole batch, up to its last message):
// one beyond it would remove messages the hub never received, one short of
// it leaves the rest unconfirmed. Nothing is acknowledged; the session ends
// and the batch is sent again (logged at most every 10 s, counted).
func (l *Link) bogusAck(queue string, last, upTo uint64) error {
	l.ignored.Add(1)
	if ok, held := l.ignoredLog.Allow("ack"); ok {
		l.log.Warn("the hub acknowledged messages that were not in the batch sent: ignored, the messages stay queued and are sent again; "+
			"check that --hub-url reaches an outpost hub (and use TLS)", "queue", queue, "sent_up_to", last, "acknowledged_up_to", upTo,
			"ignored_since_last_logged", held)
	}
	return fmt.Errorf("%w: it acknowledged %s up to %d, the batch ended at %d", errIgnoredAnswer, queue, upTo, last)
}

// collided reports messages the hub stored although it held other messages
// with their sequence numbers from this instance: another edge runs with
// this edge's instance id. Nothing was lost; it is logged (at most once a
// minute), counted and shown in the status.
func (l *Link) collided(queue string, n int) {
	total := l.collisions.Add(int64(n))
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.lastCollisionLog) < time.Minute {
		return
	}
	l.lastCollisionLog = time.Now()
	l.log.Error("another edge sends under this edge's instance id (its data directory was copied): the hub stored both edges' messages; "+
		"give the copy its own machine id (--machine-id-file) or a fresh data directory",
		"instance", l.instance, "queue", queue, "messages", n, "total", total)
}

// waitAny blocks until one of chans is closed (true) or ctx is done.
func waitAny(ctx context.Context, chans []<-chan struct{}) bool {
	cases := make([]reflect.SelectCase, 0, len(chans)+1)
	cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())})
	for _, c := range chans {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(c)})
	}
	i, _, _ := reflect.Select(cases)
	return i != 0
}
