package kv

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// maintain runs value-log GC on a schedule and, once enough has been deleted,
// reclaims: compaction alone leaves append-then-delete tombstones in the last
// level (badger #2329), so a flatten returns the tree's disk after a drain,
// and value-log GC, run until nothing is worth rewriting, the value log's.
func (db *DB) maintain() {
	defer db.wg.Done()
	t := time.NewTicker(db.opts.MaintainEvery)
	defer t.Stop()
	for {
		select {
		case <-db.stop:
			return
		case <-t.C:
			if db.deleted.Load() >= db.opts.ReclaimAfter {
				db.logReclaim(db.reclaim())
			} else {
				db.valueLogGC()
			}
		case reply := <-db.reclaimCh:
			reply <- db.reclaim()
		}
	}
}

// Reclaim compacts now and runs value-log GC; it returns when done. Queues
// call it after a large drain; tests use it to check disk is given back.
func (db *DB) Reclaim(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case db.reclaimCh <- reply:
	case <-db.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (db *DB) reclaim() error {
	if db.opts.InMemory {
		return nil
	}
	db.deleted.Store(0)
	// Tombstones still in the memtable survive a flatten, so flush first.
	if err := db.onWriter(&request{flush: true}); err != nil {
		return fmt.Errorf("reclaim: flush memtable: %w", err)
	}
	if tables := db.tableBytes(); db.opts.Space != nil && !db.opts.Space.Fits(tables) {
		// A flatten writes the new tables before it deletes the old ones,
		// through mapped files: on a disk without room for that it would be
		// the write that fails (SIGBUS). Value-log GC still runs; it
		// rewrites at most one value-log file at a time.
		db.stats.FlattensSkipped.Add(1)
		db.log.Warn("reclaim: no room to compact the tree; value-log GC only", "tables_bytes", tables)
	} else if err := db.bdb.Flatten(2); err != nil {
		return fmt.Errorf("reclaim: flatten: %w", err)
	}
	db.valueLogGCAll()
	db.stats.Reclaims.Add(1)
	if db.opts.Space != nil {
		db.opts.Space.Check()
	}
	return nil
}

// tableBytes is the size of the tree's table files, what a flatten may
// write again before it deletes them.
func (db *DB) tableBytes() int64 {
	var n int64
	for _, t := range db.bdb.Tables() {
		n += int64(t.OnDiskSize)
	}
	return n
}

// flushMemtable writes the memtable out to a table. Badger has no public
// flush, but DropPrefix of a prefix that holds data flushes the memtables
// first; a scratch key gives it something to drop. Runs on the writer
// goroutine only.
func (db *DB) flushMemtable() error {
	if err := db.bdb.Update(func(txn *badger.Txn) error { return txn.Set(scratchKey, nil) }); err != nil {
		return err
	}
	return db.bdb.DropPrefix(scratchKey)
}

var scratchKey = []byte{PrefixMeta, 's', 'c', 'r', 'a', 't', 'c', 'h'}

// valueLogGC rewrites at most 16 value-log files worth it.
func (db *DB) valueLogGC() {
	if db.opts.InMemory {
		return
	}
	db.valueLogGCUpTo(16)
}

// valueLogGCAll rewrites value-log files until none is worth it: after a
// drain, values that left the LSM tree free whole files.
func (db *DB) valueLogGCAll() { db.valueLogGCUpTo(-1) }

// valueLogGCUpTo rewrites up to n files (all worth it when n < 0), one per
// turn of the writer goroutine (see request.gc), so commits go on between
// two rewrites.
func (db *DB) valueLogGCUpTo(n int) {
	for i := 0; n < 0 || i < n; i++ {
		err := db.onWriter(&request{gc: true})
		if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) || errors.Is(err, ErrClosed) {
			return
		}
		if err != nil {
			db.log.Warn("value log gc", "err", err)
			return
		}
	}
}

// onWriter hands r (a flush or GC request) to the writer and waits for it.
func (db *DB) onWriter(r *request) error {
	done := make(chan error, 1)
	r.done = func(err error) { done <- err }
	select {
	case db.reqs <- r:
	case <-db.stop:
		return ErrClosed
	}
	select {
	case err := <-done:
		return err
	case <-db.stop:
		return ErrClosed
	}
}

func (db *DB) logReclaim(err error) {
	if err != nil {
		db.log.Warn("reclaim disk", "err", err)
	}
}
