package queue

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// capFull describes the first cap an append would break.
type capFull struct {
	what         string // "message count" or "byte"
	scope        string // "queue" or "total"
	have, adding int64  // in the cap's unit
	count        int64  // messages in the append
	limit        int64
	knob         string
}

func (c *capFull) err(name string, policy Overflow) error {
	how := "raise " + c.knob + ", set Overflow: DropOldest for this queue, or let the consumer drain it"
	if policy == DropOldest {
		how = "raise " + c.knob + " (dropping every older message of this queue would not make room)"
	}
	return fmt.Errorf("append %d to queue %q: %s %s cap reached (%d stored + %d new > %d): %s: %w",
		c.count, name, c.scope, c.what, c.have, c.adding, c.limit, how, ErrFull)
}

// overLocked checks the caps for adding n messages of bytes after freeing
// fc messages of fb bytes. Callers hold q.mu and s.totMu.
func (q *Queue) overLocked(n, bytes, fc, fb int64) *capFull {
	s := q.s
	checks := []struct {
		limit, have, add int64
		what, scope      string
		knob             string
	}{
		{q.opts.MaxCount, q.live.Count - fc, n, "message count", "queue", "QueueOptions.MaxCount"},
		{q.opts.MaxBytes, q.live.Bytes - fb, bytes, "byte", "queue", "QueueOptions.MaxBytes"},
		{s.opts.TotalMaxCount, s.totCount - fc, n, "message count", "total", "Options.TotalMaxCount"},
		{s.opts.TotalMaxBytes, s.totBytes - fb, bytes, "byte", "total", "Options.TotalMaxBytes"},
	}
	for _, c := range checks {
		if c.limit > 0 && c.have+c.add > c.limit {
			return &capFull{what: c.what, scope: c.scope, have: c.have, adding: c.add, count: n, limit: c.limit, knob: c.knob}
		}
	}
	return nil
}

type victim struct {
	seq  uint64
	size int64
}

// victimsLocked picks the oldest messages of this queue whose removal makes
// room for n messages of bytes; false if even an empty queue would not do.
// It walks the committed messages from the head cursor, then the appends
// still in flight.
func (q *Queue) victimsLocked(n, bytes int64) ([]victim, bool) {
	if q.overLocked(n, bytes, q.live.Count, q.live.Bytes) != nil {
		return nil, false
	}
	var out []victim
	var fc, fb int64
	take := func(seq uint64, size int64) bool {
		if _, gone := q.pendDel[seq]; gone {
			return true
		}
		out = append(out, victim{seq, size})
		fc, fb = fc+1, fb+size
		return q.overLocked(n, bytes, fc, fb) != nil
	}
	var last uint64
	more := true
	err := q.s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: q.prefix})
		defer it.Close()
		for it.Seek(msgKey(q.prefix, q.live.Head)); more && it.Valid(); it.Next() {
			item := it.Item()
			last = seqOf(item.Key())
			size, err := q.itemSize(item)
			if err != nil {
				return err
			}
			more = take(last, size)
		}
		return nil
	})
	if err != nil {
		q.s.log.Error("queue overflow: reading oldest messages", "queue", q.name, "err", err)
		return nil, false
	}
	for _, p := range q.pendMsgs {
		if !more {
			break
		}
		if p.seq > last {
			more = take(p.seq, p.size)
		}
	}
	return out, !more
}

// itemSize is the exact record size: Badger's ValueSize is exact for values
// kept in the tree and an estimate for values in the value log.
func (q *Queue) itemSize(item *badger.Item) (int64, error) {
	if vs := item.ValueSize(); vs < q.s.valueThreshold-64 {
		return vs, nil
	}
	var n int64
	err := item.Value(func(v []byte) error { n = int64(len(v)); return nil })
	return n, err
}
