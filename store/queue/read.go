package queue

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// item is a committed message read from the tree.
type item struct {
	seq  uint64
	rec  record
	size int64
	bad  error // the record does not decode
}

// scan reads up to max committed messages from seq from on, stopping before
// maxBytes of records (but returning at least one); maxBytes <= 0 is no limit.
func (q *Queue) scan(from uint64, max int, maxBytes int64) ([]item, error) {
	var out []item
	err := q.s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: q.prefix})
		defer it.Close()
		var total int64
		for it.Seek(msgKey(q.prefix, from)); it.Valid() && len(out) < max; it.Next() {
			bi := it.Item()
			x := item{seq: seqOf(bi.Key())}
			err := bi.Value(func(v []byte) error {
				x.size = int64(len(v))
				x.rec, x.bad = decodeRecord(v)
				return nil
			})
			if err != nil {
				return err
			}
			if maxBytes > 0 && len(out) > 0 && total+x.size > maxBytes {
				break
			}
			total += x.size
			out = append(out, x)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read queue %q: %w", q.name, err)
	}
	return out, nil
}

// Read returns up to max messages with seq > after, in order, without
// leasing them. Expired messages are skipped and removed.
func (q *Queue) Read(after uint64, max int) ([]Message, error) {
	if max <= 0 {
		return nil, fmt.Errorf("read queue %q: %w: max %d", q.name, ErrInvalid, max)
	}
	for {
		q.mu.Lock()
		from := q.live.Head
		q.mu.Unlock()
		from = maxU(from, after+1)
		items, err := q.scan(from, max, 0)
		if err != nil || len(items) == 0 {
			return nil, err
		}
		out, b, err := q.filter(items)
		if b != nil {
			q.s.send(b)
		}
		if err != nil || len(out) > 0 {
			return out, err
		}
		after = items[len(items)-1].seq
	}
}

// Lease hands out the next messages not yet handed out, in order: up to
// max messages and, past the first, up to maxBytes of records (<= 0: no
// byte limit). They stay stored until Ack. After Rewind or a restart,
// leasing starts again at the oldest unacknowledged message.
func (q *Queue) Lease(max int, maxBytes int) ([]Message, error) {
	if max <= 0 {
		return nil, fmt.Errorf("lease from queue %q: %w: max %d", q.name, ErrInvalid, max)
	}
	q.leaseMu.Lock()
	defer q.leaseMu.Unlock()
	for {
		q.mu.Lock()
		from := maxU(q.leased+1, q.live.Head)
		q.mu.Unlock()
		items, err := q.scan(from, max, int64(maxBytes))
		if err != nil || len(items) == 0 {
			return nil, err
		}
		out, b, err := q.filter(items)
		if b != nil {
			q.s.send(b)
		}
		if err != nil {
			return nil, err
		}
		q.mu.Lock()
		q.leased = maxU(q.leased, items[len(items)-1].seq)
		if len(out) > 0 {
			q.handed = maxU(q.handed, out[len(out)-1].Seq)
		}
		q.mu.Unlock()
		if len(out) > 0 {
			return out, nil
		}
	}
}

// filter drops items removed since they were read and removes the expired
// and unreadable ones; it returns the rest as messages.
func (q *Queue) filter(items []item) ([]Message, *batch, error) {
	now, el := q.s.opts.Now(), q.s.elapsed()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.s.closed.Load() {
		return nil, nil, ErrClosed
	}
	out := make([]Message, 0, len(items))
	var expired, bad []victim
	for i := range items {
		x := &items[i]
		if _, gone := q.pendDel[x.seq]; gone || x.seq < q.live.Head {
			continue
		}
		switch {
		case x.bad != nil:
			bad = append(bad, victim{x.seq, x.size})
		case q.s.expired(&x.rec, now, el):
			expired = append(expired, victim{x.seq, x.size})
		default:
			out = append(out, x.rec.message(x.seq))
		}
	}
	if len(expired)+len(bad) == 0 || q.s.opts.Replicated { // Expire removes them
		return out, nil, nil
	}
	b, err := q.removeExpiredLocked(expired, bad, false)
	return out, b, err
}

// removeExpiredLocked deletes expired (and unreadable) messages that are
// still stored, counting them. prefix says they start at the head with no
// live message between them, so the head cursor may move past them.
func (q *Queue) removeExpiredLocked(expired, bad []victim, prefix bool) (*batch, error) {
	expired, err := q.stillStored(expired)
	if err != nil {
		return nil, err
	}
	if bad, err = q.stillStored(bad); err != nil {
		return nil, err
	}
	if len(expired)+len(bad) == 0 {
		return nil, nil
	}
	for _, v := range bad {
		q.s.log.Error("queue message unreadable, removed", "queue", q.name, "seq", v.seq)
	}
	o := &op{}
	after := q.live
	q.s.totMu.Lock()
	q.removeLocked(o, &after, append(expired, bad...))
	q.s.totMu.Unlock()
	after.Expired += uint64(len(expired))
	after.Dropped += uint64(len(bad))
	after.Elapsed = q.s.elapsed()
	if prefix {
		last := uint64(0)
		for _, v := range append(expired, bad...) {
			last = maxU(last, v.seq)
		}
		after.Head = maxU(after.Head, last+1)
	}
	o.after = after
	return q.addLocked(o), nil
}

// stillStored keeps the victims no committed op has deleted since they were
// read: removals in flight are in pendDel, committed ones are gone from the
// tree (checked in a transaction started now, under q.mu).
func (q *Queue) stillStored(vs []victim) ([]victim, error) {
	if len(vs) == 0 {
		return nil, nil
	}
	out := vs[:0]
	err := q.s.db.View(func(txn *badger.Txn) error {
		for _, v := range vs {
			if _, gone := q.pendDel[v.seq]; gone || v.seq < q.live.Head {
				continue
			}
			_, err := txn.Get(msgKey(q.prefix, v.seq))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	return out, err
}

// Ack removes every message with seq <= upTo, durably, and moves the head
// cursor past upTo. upTo may not pass the highest seq handed out by Lease.
func (q *Queue) Ack(ctx context.Context, upTo uint64) error {
	last := make(chan error, 1)
	if err := q.AckAsync(upTo, func(err error) { last <- err }); err != nil {
		return err
	}
	select {
	case err := <-last:
		return err
	case <-ctx.Done():
		return fmt.Errorf("ack queue %q up to %d: %w", q.name, upTo, ctx.Err())
	}
}

// AckAsync is Ack without the wait: the removal is queued behind every
// earlier change of the queue (a Lease, Stats and Rewind see it at once)
// and done runs once it is durable, or failed. An error returned (the
// store closed, upTo never leased) means nothing was queued and done does
// not run. A delivery whose receiver gets what a crash lost again
// acknowledges this way, without a commit's wait per PUBACK.
func (q *Queue) AckAsync(upTo uint64, done func(error)) error {
	b, err := q.ack(upTo, func(err error) {
		if err != nil {
			err = fmt.Errorf("ack queue %q up to %d: %w", q.name, upTo, err)
		}
		done(err)
	})
	if b != nil {
		q.s.send(b)
	}
	if err != nil {
		return fmt.Errorf("ack queue %q up to %d: %w", q.name, upTo, err)
	}
	return nil
}

func (q *Queue) ack(upTo uint64, done func(error)) (*batch, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.s.closed.Load() {
		return nil, ErrClosed
	}
	if upTo > q.handed {
		return nil, fmt.Errorf("%w (handed out up to %d)", ErrNotLeased, q.handed)
	}
	var vs []victim
	if upTo >= q.live.Head {
		var err error
		if vs, err = q.storedRange(q.live.Head, upTo); err != nil {
			return nil, err
		}
	}
	// One op per chunk so each fits a transaction; the head moves with each.
	chunk := int(q.s.budgetCount / 2)
	var b *batch
	var o *op
	for {
		n := min(chunk, len(vs))
		o = &op{}
		after := q.live
		if n > 0 {
			q.s.totMu.Lock()
			q.removeLocked(o, &after, vs[:n])
			q.s.totMu.Unlock()
			after.Acked += uint64(n)
		}
		if n == len(vs) {
			after.Head = maxU(after.Head, upTo+1)
		} else {
			after.Head = vs[n-1].seq + 1
		}
		o.after = after
		vs = vs[n:]
		if len(vs) > 0 {
			b = firstBatch(b, q.addLocked(o))
			continue
		}
		o.done = done
		return firstBatch(b, q.addLocked(o)), nil
	}
}

func firstBatch(a, b *batch) *batch {
	if a != nil {
		return a
	}
	return b
}

// storedRange lists the stored messages in [from, to] that no op in flight
// removes, with their sizes, reading keys only.
func (q *Queue) storedRange(from, to uint64) ([]victim, error) {
	var out []victim
	err := q.s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: q.prefix})
		defer it.Close()
		for it.Seek(msgKey(q.prefix, from)); it.Valid(); it.Next() {
			seq := seqOf(it.Item().Key())
			if seq > to {
				break
			}
			if _, gone := q.pendDel[seq]; gone {
				continue
			}
			size, err := q.itemSize(it.Item())
			if err != nil {
				return err
			}
			out = append(out, victim{seq, size})
		}
		return nil
	})
	return out, err
}

// Rewind makes Lease start again at the oldest unacknowledged message, for
// a consumer that lost what it was handed (a dropped connection).
func (q *Queue) Rewind() {
	q.leaseMu.Lock()
	defer q.leaseMu.Unlock()
	q.mu.Lock()
	q.leased = q.live.Head - 1
	q.mu.Unlock()
}

func maxU(a, b uint64) uint64 { return max(a, b) }

// Purge removes every message stored now, durably, and returns how many:
// for the queues of an identity that was deleted. A consumer still leasing
// meanwhile loses what it was handed (it should be stopped first).
func (q *Queue) Purge(ctx context.Context) (int, error) {
	q.Rewind()
	n := 0
	for {
		msgs, err := q.Lease(1000, 16<<20)
		if err != nil {
			return n, fmt.Errorf("purge queue %q: %w", q.name, err)
		}
		if len(msgs) == 0 {
			return n, nil
		}
		if err := q.Ack(ctx, msgs[len(msgs)-1].Seq); err != nil {
			return n, fmt.Errorf("purge queue %q: %w", q.name, err)
		}
		n += len(msgs)
	}
}
