package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/store/kv"
)

// Queue is one durable FIFO queue. Its methods are safe for concurrent use.
type Queue struct {
	s      *Store
	name   string
	id     uint32
	prefix []byte

	leaseMu sync.Mutex // serialises Lease and Rewind

	mu       sync.Mutex
	opts     QueueOptions
	dur      meta // as committed
	live     meta // dur plus the ops not yet committed
	pending  []*op
	inflight bool
	pendDel  map[uint64]struct{} // seqs removed by an uncommitted op
	pendMsgs []pendingMsg        // appended, not yet committed, in seq order
	leased   uint64              // last seq handed out since Open or Rewind
	handed   uint64              // highest seq handed out since Open; Ack may go up to it
	notify   chan struct{}
	logged   meta // counters at the last loss report (store goroutine only)

	noSpace       atomic.Uint64 // appends refused for disk space (not persisted)
	loggedNoSpace uint64        // noSpace at the last report (store goroutine only)
}

type pendingMsg struct {
	seq  uint64
	size int64
}

func newQueue(s *Store, id uint32, m meta, opts QueueOptions) *Queue {
	return &Queue{
		s: s, name: m.Name, id: id, prefix: msgPrefix(id), opts: opts,
		dur: m, live: m, logged: m,
		pendDel: map[uint64]struct{}{},
		leased:  m.Head - 1, handed: m.Head - 1,
		notify: make(chan struct{}),
	}
}

// Name returns the queue's name.
func (q *Queue) Name() string { return q.name }

// Append adds msgs at the tail as one atomic commit and returns their seqs
// once they are durable (in the sense of the kv database's Durability). If
// ctx ends first the error is ctx's and the messages may still be stored.
func (q *Queue) Append(ctx context.Context, msgs ...Message) ([]uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	type result struct {
		seqs []uint64
		err  error
	}
	ch := make(chan result, 1)
	q.AppendAsync(msgs, func(seqs []uint64, err error) { ch <- result{seqs, err} })
	select {
	case r := <-ch:
		if r.err != nil && q.s.opts.Replicated {
			// A refusal is counted by an op still in flight: durable first.
			if err := q.settle(ctx); err != nil && !errors.Is(err, ErrClosed) {
				return nil, errors.Join(r.err, err)
			}
		}
		return r.seqs, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("append to queue %q: %w", q.name, ctx.Err())
	}
}

// AppendAsync is Append with a callback: seqs are assigned in call order,
// and done is called once per call, in that order, when the messages are
// durable or have failed. done may run before AppendAsync returns (on a
// validation error or a full queue) or on the store's goroutine; it must
// not block.
func (q *Queue) AppendAsync(msgs []Message, done func(seqs []uint64, err error)) {
	q.AppendAsyncWith(msgs, nil, done)
}

// AppendAsyncWith is AppendAsync that also writes extra (keys outside the
// queue's, such as a cursor of where the messages came from) in the same
// commit: both are durable or neither is. extra is not written when msgs
// is empty or the append is refused.
func (q *Queue) AppendAsyncWith(msgs []Message, extra []kv.Op, done func(seqs []uint64, err error)) {
	if len(msgs) == 0 {
		done(nil, nil)
		return
	}
	b, err := q.appendAsync(msgs, extra, done)
	if b != nil {
		q.s.send(b)
	}
	if err != nil {
		done(nil, err)
	}
}

func (q *Queue) appendAsync(msgs []Message, extra []kv.Op, done func([]uint64, error)) (*batch, error) {
	q.mu.Lock()
	ttl := q.opts.DefaultTTL
	q.mu.Unlock()
	vals, bytes, est, err := q.encode(msgs, ttl, extra)
	if err != nil {
		return nil, fmt.Errorf("append to queue %q: %w", q.name, err)
	}
	if sp := q.s.opts.Space; sp != nil {
		if err := sp.Telemetry(bytes); err != nil {
			q.noSpace.Add(uint64(len(msgs)))
			return nil, fmt.Errorf("append %d to queue %q: %w (%w): %w", len(msgs), q.name, ErrNoSpace, err, ErrFull)
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.s.closed.Load() {
		return nil, ErrClosed
	}
	o, b, err := q.appendLocked(vals, bytes, est)
	if err != nil {
		return b, err
	}
	o.kvOps = append(o.kvOps, extra...)
	first := o.after.Next - uint64(len(vals))
	o.done = func(err error) {
		if err != nil {
			done(nil, fmt.Errorf("append to queue %q: %w", q.name, err))
			return
		}
		seqs := make([]uint64, len(vals))
		for i := range seqs {
			seqs[i] = first + uint64(i)
		}
		done(seqs, nil)
	}
	return q.addLocked(o), nil
}

// encode turns msgs into records outside the queue's lock.
func (q *Queue) encode(msgs []Message, defTTL time.Duration, extra []kv.Op) ([][]byte, int64, op, error) {
	now, el := q.s.opts.Now(), q.s.elapsed()
	vals := make([][]byte, len(msgs))
	var bytes int64
	est := op{count: int64(len(msgs) + len(extra))}
	for _, x := range extra {
		est.size += q.s.estimate(len(x.Key), len(x.Value))
	}
	for i := range msgs {
		m := &msgs[i]
		if err := m.validate(); err != nil {
			return nil, 0, est, fmt.Errorf("message %d: %w", i, err)
		}
		r := record{ID: m.ID, Source: m.Source, Props: m.Props, Sys: m.Sys, Body: m.Body, Path: m.EdgePath,
			TTL: int64(m.TTL), Wall: now.UnixNano(), Elapsed: el}
		if r.ID == "" {
			r.ID = NewID()
		}
		if r.TTL == 0 {
			r.TTL = int64(defTTL)
		}
		v, err := kv.Marshal(&r)
		if err != nil {
			return nil, 0, est, fmt.Errorf("message %d: %w", i, err)
		}
		vals[i] = v
		bytes += int64(len(v))
		est.size += q.s.estimate(len(q.prefix)+8, len(v))
	}
	if est.count > q.s.budgetCount || est.size > q.s.budgetSize {
		return nil, 0, est, fmt.Errorf("%w: %d messages, about %d bytes in the log (at most %d and %d); split the batch",
			ErrTooLarge, est.count, est.size, q.s.budgetCount, q.s.budgetSize)
	}
	return vals, bytes, est, nil
}

// appendLocked applies the caps, assigns seqs and builds the op. On
// rejection it queues a meta-only op to count it and returns its batch.
func (q *Queue) appendLocked(vals [][]byte, bytes int64, est op) (*op, *batch, error) {
	s := q.s
	n := int64(len(vals))
	s.totMu.Lock()
	defer s.totMu.Unlock()
	after := q.live
	var victims []victim
	if full := q.overLocked(n, bytes, 0, 0); full != nil {
		var ok bool
		if q.opts.Overflow == DropOldest {
			victims, ok = q.victimsLocked(n, bytes)
		}
		if !ok {
			after.Rejected += uint64(n)
			b := q.addLocked(&op{after: after})
			return nil, b, full.err(q.name, q.opts.Overflow)
		}
	}
	o := &op{appends: true, count: est.count, size: est.size}
	if len(victims) > 0 {
		q.removeLocked(o, &after, victims)
		after.Dropped += uint64(len(victims))
		after.Head = max(after.Head, victims[len(victims)-1].seq+1)
		s.log.Debug("queue full, dropping oldest", "queue", q.name, "count", len(victims))
	}
	for _, v := range vals {
		seq := after.Next
		after.Next++
		o.kvOps = append(o.kvOps, kv.Set(msgKey(q.prefix, seq), v))
		q.pendMsgs = append(q.pendMsgs, pendingMsg{seq, int64(len(v))})
	}
	after.Count += n
	after.Bytes += bytes
	after.Appended += uint64(n)
	after.Elapsed = s.elapsed()
	s.totCount += n
	s.totBytes += bytes
	o.after = after
	return o, nil, nil
}

// removeLocked adds deletes of victims to o and takes them out of after and
// the store totals. Callers hold q.mu and s.totMu.
func (q *Queue) removeLocked(o *op, after *meta, victims []victim) {
	var bytes int64
	for _, v := range victims {
		o.kvOps = append(o.kvOps, kv.Op{Key: msgKey(q.prefix, v.seq), Delete: true, Freed: int(v.size)})
		o.deleted = append(o.deleted, v.seq)
		q.pendDel[v.seq] = struct{}{}
		bytes += v.size
	}
	o.count += int64(len(victims))
	o.size += int64(len(victims)) * q.s.estimate(len(q.prefix)+8, 0)
	o.freed += bytes
	after.Count -= int64(len(victims))
	after.Bytes -= bytes
	q.s.totCount -= int64(len(victims))
	q.s.totBytes -= bytes
}

// Wait returns a channel that is closed when messages appended after the
// call are committed. Take it before Lease or Read so nothing is missed.
func (q *Queue) Wait() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.notify
}

// Stats is a queue's state and counters. Expired, Dropped and Rejected are
// persisted and survive restarts.
type Stats struct {
	Depth     int64         // messages stored
	Bytes     int64         // record bytes stored (body, properties, ids, ~30 B framing)
	OldestAge time.Duration // age of the oldest stored message (see Store.age)
	Appended  uint64
	Acked     uint64
	Expired   uint64 // removed because their TTL passed
	Dropped   uint64 // removed by DropOldest (or unreadable)
	Rejected  uint64 // refused because a cap was reached
	// NoSpace counts messages refused because the disk was below its
	// reserve (Options.Space); since Open, not persisted.
	NoSpace uint64
}

// Stats returns the queue's state including operations still in flight.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	m := q.live
	q.mu.Unlock()
	st := Stats{Depth: m.Count, Bytes: m.Bytes, Appended: m.Appended, Acked: m.Acked,
		Expired: m.Expired, Dropped: m.Dropped, Rejected: m.Rejected, NoSpace: q.noSpace.Load()}
	if m.Count > 0 {
		if items, err := q.scan(m.Head, 1, 0); err == nil && len(items) > 0 && items[0].bad == nil {
			st.OldestAge = q.s.age(&items[0].rec, q.s.opts.Now(), q.s.elapsed())
		}
	}
	return st
}
