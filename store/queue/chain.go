package queue

import (
	"fmt"

	"github.com/outpost-edge/outpost/store/kv"
)

// Each queue commits through its own chain: ops (append, ack, removal) are
// formed under the queue's lock against its live state and queued; at most
// one batch of them is in kv at a time, and everything queued meanwhile
// forms the next batch. A batch is one kv request, so it commits
// atomically together with the queue's meta as of its last op, and kv
// groups the batches of different queues (and other stores) into one
// transaction and one sync.
//
// Keeping one batch in flight is what makes failure exact: when a batch
// fails, the ops queued behind it (formed on the assumption that it would
// commit) fail too, and the live state goes back to what is on disk.

// op is one atomic change to a queue.
type op struct {
	kvOps   []kv.Op
	after   meta     // the queue's meta once this op has committed
	deleted []uint64 // seqs this op removes
	freed   int64    // record bytes it deletes
	appends bool
	count   int64 // kv entries, for the batch budget
	size    int64 // kv bytes estimate, for the batch budget
	done    func(error)
}

type batch struct {
	q   *Queue
	ops []*op
}

type completion struct {
	b   *batch
	err error
}

// addLocked queues o (whose after is the new live state) and returns a batch
// to send if the chain was idle. Callers hold q.mu and have checked that the
// store is open.
func (q *Queue) addLocked(o *op) *batch {
	q.live = o.after
	q.s.outstanding.Add(1)
	q.pending = append(q.pending, o)
	if q.inflight {
		return nil
	}
	return q.takeLocked()
}

// takeLocked moves as many queued ops as fit one kv request into a batch.
func (q *Queue) takeLocked() *batch {
	if len(q.pending) == 0 {
		return nil
	}
	n, count, size := 0, int64(1), int64(128) // the meta record
	for n < len(q.pending) {
		o := q.pending[n]
		if n > 0 && (count+o.count > q.s.budgetCount || size+o.size > q.s.budgetSize) {
			break
		}
		count += o.count
		size += o.size
		n++
	}
	b := &batch{q: q, ops: append([]*op(nil), q.pending[:n]...)}
	q.pending = append(q.pending[:0], q.pending[n:]...)
	q.inflight = true
	return b
}

// send hands b to kv. Called without q.mu; only the goroutine that took b
// sends it, so batches of a queue reach kv in order.
func (s *Store) send(b *batch) {
	n := 1
	for _, o := range b.ops {
		n += len(o.kvOps)
	}
	ops := make([]kv.Op, 0, n)
	for _, o := range b.ops {
		ops = append(ops, o.kvOps...)
	}
	m := b.ops[len(b.ops)-1].after
	v, err := kv.Marshal(&m)
	if err != nil {
		s.finished(b, err)
		return
	}
	ops = append(ops, kv.Set(metaKey(b.q.id), v))
	s.db.CommitAsync(ops, func(err error) { s.finished(b, err) })
}

// finished runs on kv's writer goroutine and must not block: it hands the
// result to the store's goroutine.
func (s *Store) finished(b *batch, err error) {
	s.doneMu.Lock()
	s.doneList = append(s.doneList, completion{b, err})
	s.doneMu.Unlock()
	select {
	case s.doneSig <- struct{}{}:
	default:
	}
}

func (s *Store) drainCompletions() {
	for {
		s.doneMu.Lock()
		list := s.doneList
		s.doneList = nil
		s.doneMu.Unlock()
		if len(list) == 0 {
			return
		}
		for _, c := range list {
			c.b.q.complete(c.b, c.err)
		}
	}
}

// complete applies a finished batch, starts the next one and then tells the
// callers, in order.
func (q *Queue) complete(b *batch, err error) {
	q.mu.Lock()
	q.inflight = false
	failed := b.ops
	drained := err == nil && b.ops[len(b.ops)-1].after.Count == 0
	if err == nil {
		q.commitLocked(b)
	} else {
		err = fmt.Errorf("queue %q: %w", q.name, err)
		failed = append(failed, q.pending...)
		q.pending = nil
		q.s.addTotals(q.dur.Count-q.live.Count, q.dur.Bytes-q.live.Bytes)
		next := q.live.Next // never hand out a seq twice
		q.live = q.dur
		q.live.Next = next
		clear(q.pendDel)
		q.pendMsgs = nil
	}
	next := q.takeLocked()
	q.mu.Unlock()
	if next != nil {
		q.s.send(next)
	}
	for _, o := range failed {
		if o.done != nil {
			o.done(err)
		}
		q.s.outstanding.Done()
	}
	if drained || err == nil && q.s.opts.Space != nil { // a low disk does not wait for empty queues
		q.s.maybeReclaim()
	}
}

func (q *Queue) commitLocked(b *batch) {
	last := b.ops[len(b.ops)-1].after
	q.dur = last
	appended := false
	for _, o := range b.ops {
		for _, seq := range o.deleted {
			delete(q.pendDel, seq)
		}
		q.s.freed.Add(o.freed)
		appended = appended || o.appends
	}
	i := 0
	for i < len(q.pendMsgs) && q.pendMsgs[i].seq < last.Next {
		i++
	}
	q.pendMsgs = append(q.pendMsgs[:0], q.pendMsgs[i:]...)
	if appended {
		close(q.notify)
		q.notify = make(chan struct{})
	}
}

func (s *Store) addTotals(count, bytes int64) {
	s.totMu.Lock()
	s.totCount += count
	s.totBytes += bytes
	s.totMu.Unlock()
}

// estimate is Badger's own size estimate of one entry (txn.checkSize).
func (s *Store) estimate(key, value int) int64 {
	if int64(value) < s.valueThreshold {
		return int64(key+value) + 2 + 10
	}
	return int64(key) + 14 + 10
}
