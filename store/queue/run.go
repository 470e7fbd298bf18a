package queue

import (
	"context"
	"fmt"
	"time"
)

// run is the store's goroutine: it finishes commits (so kv's writer never
// waits on a queue lock) and, every SweepEvery, removes expired messages at
// the queues' heads, saves the elapsed clock and reports losses. A
// Replicated store only reports losses: Expire, inside the replicated
// changes, removes expired messages.
func (s *Store) run() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-s.doneSig:
			s.drainCompletions()
		case <-t.C:
			if s.opts.Replicated {
				s.reportAllLosses()
				continue
			}
			s.sweep()
		case <-s.stop:
			s.drainCompletions()
			return
		}
	}
}

// sweepBudget bounds the messages one sweep reads per queue.
const sweepBudget = 8192

func (s *Store) sweep() {
	if s.closed.Load() {
		return
	}
	for _, q := range s.all() {
		q.sweepExpired()
		q.reportLosses()
	}
	if err := s.saveClock(context.Background()); err != nil {
		s.log.Warn("queue clock", "err", err)
	}
}

// reportAllLosses logs every queue's losses (see reportLosses).
func (s *Store) reportAllLosses() {
	if s.closed.Load() {
		return
	}
	for _, q := range s.all() {
		q.reportLosses()
	}
}

// sweepExpired removes the expired messages at the head of the queue, so an
// unread queue still gives back their space. Expired messages behind a live
// one are removed when Lease or Read reaches them.
func (q *Queue) sweepExpired() {
	for read := 0; read < sweepBudget; {
		q.mu.Lock()
		from := q.live.Head
		q.mu.Unlock()
		items, err := q.scan(from, 512, 0)
		if err != nil {
			q.s.log.Warn("queue sweep", "queue", q.name, "err", err)
			return
		}
		read += len(items)
		expired, bad, live := q.headVictims(items)
		stop := live || len(items) < 512
		q.mu.Lock()
		var b *batch
		if len(expired)+len(bad) > 0 && !q.s.closed.Load() {
			b, err = q.removeExpiredLocked(expired, bad, true)
		}
		q.mu.Unlock()
		if b != nil {
			q.s.send(b)
		}
		if err != nil || stop || len(expired)+len(bad) == 0 {
			return
		}
	}
}

// headVictims returns the expired and the unreadable messages among items
// (read from the head of q) before the first live one; live reports that
// one was found.
func (q *Queue) headVictims(items []item) (expired, bad []victim, live bool) {
	now, el := q.s.opts.Now(), q.s.elapsed()
	for _, x := range items {
		if x.bad != nil {
			bad = append(bad, victim{x.seq, x.size})
			continue
		}
		if !q.s.expired(&x.rec, now, el) {
			return expired, bad, true
		}
		expired = append(expired, victim{x.seq, x.size})
	}
	return expired, bad, false
}

// reportLosses logs what was expired, dropped or rejected since the last
// report, so losses are visible without flooding the log.
func (q *Queue) reportLosses() {
	q.mu.Lock()
	m := q.live
	q.mu.Unlock()
	if d := m.Expired - q.logged.Expired; d > 0 {
		q.s.log.Warn("queue messages expired", "queue", q.name, "count", d, "total", m.Expired)
	}
	if d := m.Dropped - q.logged.Dropped; d > 0 {
		q.s.log.Warn("queue full, oldest messages dropped", "queue", q.name, "count", d, "total", m.Dropped)
	}
	if d := m.Rejected - q.logged.Rejected; d > 0 {
		q.s.log.Warn("queue full, messages rejected", "queue", q.name, "count", d, "total", m.Rejected)
	}
	q.logged = m
	if n := q.noSpace.Load(); n > q.loggedNoSpace {
		q.s.log.Warn("disk below its reserve, messages refused", "queue", q.name, "count", n-q.loggedNoSpace, "total", n)
		q.loggedNoSpace = n
	}
}

// maybeReclaim asks for disk to be given back once every queue is empty
// after enough was deleted: with small records the space only returns
// through a compaction (kv.DB.Reclaim). While the disk is below its
// reserve it does not wait for empty queues, and a quarter is enough: the
// drain is what lets ingest resume.
func (s *Store) maybeReclaim() {
	low := s.opts.Space != nil && s.opts.Space.Low()
	after := s.opts.ReclaimAfter
	if low {
		after /= 4
	}
	if s.opts.ReclaimAfter < 0 || s.freed.Load() < after {
		return
	}
	s.totMu.Lock()
	empty := s.totCount == 0
	s.totMu.Unlock()
	if !empty && !low {
		return
	}
	select {
	case s.reclaimCh <- struct{}{}:
	default:
	}
}

func (s *Store) reclaimer() {
	defer s.wg.Done()
	ctx := s.ctx
	for {
		select {
		case <-s.stop:
			return
		case <-s.reclaimCh:
			freed := s.freed.Swap(0)
			err := s.db.Reclaim(ctx)
			if err != nil && ctx.Err() == nil {
				s.log.Warn("queue reclaim disk", "err", err)
			} else if err == nil {
				s.log.Info("queues drained, disk reclaimed", "freed_bytes", freed)
			}
			s.reclaims.Add(1)
		}
	}
}

// Expire removes the expired (and unreadable) messages at the head of
// every queue, queues in id order, at most max in all, as of Options.Now,
// and returns how many it removed once that is durable. A Replicated store
// expires its messages only through it, inside a replicated change.
func (s *Store) Expire(ctx context.Context, max int) (int, error) {
	n := 0
	for _, q := range s.all() {
		if n >= max {
			break
		}
		removed, err := q.expireHead(ctx, max-n)
		n += removed
		if err != nil {
			return n, fmt.Errorf("expire queue %q: %w", q.name, err)
		}
	}
	return n, nil
}

// expireHead removes up to max expired messages at the head of q and
// waits for the removal to commit.
func (q *Queue) expireHead(ctx context.Context, max int) (int, error) {
	q.mu.Lock()
	from := q.live.Head
	q.mu.Unlock()
	items, err := q.scan(from, min(max, 512), 0)
	if err != nil {
		return 0, err
	}
	expired, bad, _ := q.headVictims(items)
	if len(expired)+len(bad) == 0 {
		return 0, nil
	}
	q.mu.Lock()
	if q.s.closed.Load() {
		q.mu.Unlock()
		return 0, ErrClosed
	}
	b, err := q.removeExpiredLocked(expired, bad, true)
	q.mu.Unlock()
	if b != nil {
		q.s.send(b)
	}
	if err != nil {
		return 0, err
	}
	return len(expired) + len(bad), q.settle(ctx)
}

// settle waits until every change queued on q so far is durable: it
// queues an op that rewrites the queue's meta as it stands (the same
// bytes) and waits for it; ops of a queue commit in order.
func (q *Queue) settle(ctx context.Context) error {
	ch := make(chan error, 1)
	q.mu.Lock()
	if q.s.closed.Load() {
		q.mu.Unlock()
		return ErrClosed
	}
	b := q.addLocked(&op{after: q.live, done: func(err error) { ch <- err }})
	q.mu.Unlock()
	if b != nil {
		q.s.send(b)
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
