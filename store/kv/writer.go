package kv

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Op is one write: a set of Key to Value, or a delete of Key.
type Op struct {
	Key    []byte
	Value  []byte
	Delete bool
	// Freed is, for a delete, the size of the value it removes if the caller
	// knows it; it drives when maintenance compacts to give disk back.
	Freed int
}

// Set returns a set op.
func Set(key, value []byte) Op { return Op{Key: key, Value: value} }

// Del returns a delete op.
func Del(key []byte) Op { return Op{Key: key, Delete: true} }

type request struct {
	ops  []Op
	done func(error)
	// flush asks the writer to flush the memtable instead of writing ops:
	// Badger refuses every write while it does (DropPrefix), so it runs on
	// the writer goroutine, between groups, where no commit can be refused.
	flush bool
	// gc asks the writer to rewrite one value-log file worth it (done gets
	// badger.ErrNoRewrite when none is). On the writer goroutine no commit
	// of ours runs meanwhile: Badger's GC reads the memtable's max version
	// without the lock its writes take (a data race in Badger).
	gc bool
}

// special reports whether r is work for the writer other than ops.
func (r *request) special() bool { return r.flush || r.gc }

// maxGroupOps bounds one group so a burst cannot build a transaction that
// Badger refuses; the rest simply forms the next group.
const maxGroupOps = 8192

// Commit writes ops atomically and returns once they are durable in the
// sense of the database's Durability. Concurrent commits are grouped into one
// Badger transaction (and one sync).
//
// With Options.Space set, a commit that grows the store is refused when the
// gate says the disk is full; one that frees at least what it writes (a
// delete, an ack) always runs.
func (db *DB) Commit(ctx context.Context, ops ...Op) error {
	if g := db.opts.Space; g != nil {
		if n := growth(ops); n > 0 {
			if err := g.Write(n); err != nil {
				return fmt.Errorf("commit %d ops: %w", len(ops), err)
			}
		}
	}
	ch := make(chan error, 1)
	if err := db.enqueue(ctx, ops, func(err error) { ch <- err }); err != nil {
		return err
	}
	return <-ch
}

// growth is what ops add to the store: bytes set minus bytes freed.
func growth(ops []Op) int64 {
	var n int64
	for _, o := range ops {
		if o.Delete {
			n -= int64(o.Freed)
		} else {
			n += int64(len(o.Key) + len(o.Value))
		}
	}
	return n
}

// Admit asks Options.Space, as Commit does, whether ops may grow the
// store; nil when they free at least what they write or no gate is set.
// A CommitAsync caller that must keep the disk reserve (state that can be
// rebuilt or done without, unlike a queue's ack) calls it first.
func (db *DB) Admit(ops ...Op) error {
	g := db.opts.Space
	if g == nil {
		return nil
	}
	if n := growth(ops); n > 0 {
		if err := g.Write(n); err != nil {
			return fmt.Errorf("write %d ops: %w", len(ops), err)
		}
	}
	return nil
}

// CommitAsync queues ops and calls done (from the writer goroutine) once
// they are durable or have failed. done must not block.
func (db *DB) CommitAsync(ops []Op, done func(error)) {
	if err := db.enqueue(nil, ops, done); err != nil {
		done(err)
	}
}

func (db *DB) enqueue(ctx context.Context, ops []Op, done func(error)) error {
	db.enqMu.RLock()
	defer db.enqMu.RUnlock()
	if db.closed.Load() {
		return ErrClosed
	}
	r := &request{ops: ops, done: done}
	var ctxDone <-chan struct{}
	if ctx != nil {
		ctxDone = ctx.Done()
	}
	select {
	case db.reqs <- r:
		return nil
	case <-db.stop:
		return ErrClosed
	case <-ctxDone:
		return fmt.Errorf("commit: %w", ctxErr(ctx))
	}
}

// writer commits whatever is queued as one group, without waiting for more:
// a group-commit timer would delay every lone writer by its full period.
func (db *DB) writer() {
	defer db.wg.Done()
	for {
		select {
		case r := <-db.reqs:
			db.handle(r)
		case <-db.stop:
			db.drainOnStop()
			return
		}
	}
}

func (db *DB) handle(r *request) {
	if r.special() {
		db.runSpecial(r)
		return
	}
	group, special := db.gather(r)
	db.commitGroup(group)
	if special != nil {
		db.runSpecial(special)
	}
}

func (db *DB) runSpecial(r *request) {
	if r.flush {
		r.done(db.flushMemtable())
		return
	}
	r.done(db.bdb.RunValueLogGC(0.5))
}

// gather takes what is queued behind first, up to a flush or GC request.
func (db *DB) gather(first *request) (group []*request, special *request) {
	group = []*request{first}
	n := len(first.ops)
	for n < maxGroupOps {
		select {
		case r := <-db.reqs:
			if r.special() {
				return group, r
			}
			group = append(group, r)
			n += len(r.ops)
		default:
			return group, nil
		}
	}
	return group, nil
}

// drainOnStop finishes requests that were queued before Close.
func (db *DB) drainOnStop() {
	for {
		select {
		case r := <-db.reqs:
			db.handle(r)
		default:
			return
		}
	}
}

// commitGroup writes the group in as few transactions as Badger allows; a
// request is never split across transactions, so each stays atomic.
func (db *DB) commitGroup(group []*request) {
	txn := db.bdb.NewTransaction(true)
	var pending []*request
	flush := func() {
		err := txn.Commit()
		db.finish(pending, err)
		pending = pending[:0]
		txn = db.bdb.NewTransaction(true)
	}
	for _, r := range group {
		err := apply(txn, r.ops)
		if errors.Is(err, badger.ErrTxnTooBig) && len(pending) > 0 {
			txn.Discard()
			txn = db.bdb.NewTransaction(true)
			for _, p := range pending { // replay the earlier requests, then commit them alone
				_ = apply(txn, p.ops)
			}
			flush()
			err = apply(txn, r.ops)
		}
		if err != nil {
			txn.Discard()
			txn = db.bdb.NewTransaction(true)
			if errors.Is(err, badger.ErrTxnTooBig) {
				err = fmt.Errorf("%w (%d ops)", ErrTooLarge, len(r.ops))
			}
			r.done(fmt.Errorf("commit: %w", err))
			continue
		}
		pending = append(pending, r)
	}
	if len(pending) > 0 {
		flush()
	}
	txn.Discard()
}

func apply(txn *badger.Txn, ops []Op) error {
	for _, op := range ops {
		var err error
		if op.Delete {
			err = txn.Delete(op.Key)
		} else {
			err = txn.Set(op.Key, op.Value)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (db *DB) finish(reqs []*request, err error) {
	if err != nil {
		err = fmt.Errorf("commit: %w", err)
	} else {
		db.stats.Groups.Add(1)
	}
	var deleted int64
	for _, r := range reqs {
		if err == nil {
			for _, op := range r.ops {
				if op.Delete {
					deleted += int64(len(op.Key) + op.Freed)
				}
			}
			db.stats.Ops.Add(int64(len(r.ops)))
		}
		db.stats.Commits.Add(1)
		r.done(err)
	}
	db.deleted.Add(deleted)
}
