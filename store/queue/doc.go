// Package queue keeps Outpost's durable store-and-forward queues: one per
// endpoint × priority, each a FIFO of messages that stay on disk until the
// consumer (the uplink, a module connection) acknowledges them.
//
//	s, err := queue.Open(ctx, db, queue.Options{Logger: log, TotalMaxBytes: 1 << 30})
//	q, err := s.Queue("upstream/0", queue.QueueOptions{MaxBytes: 256 << 20, DefaultTTL: 7 * 24 * time.Hour})
//	seqs, err := q.Append(ctx, queue.Message{ID: id, Body: b}) // durable when it returns
//	q.AppendAsync(msgs, func(seqs []uint64, err error) { ... })  // same, callback in call order
//	wake := q.Wait()
//	msgs, err := q.Lease(500, 1<<20) // next messages not yet handed out
//	if len(msgs) == 0 { <-wake }
//	err = q.Ack(ctx, msgs[len(msgs)-1].Seq) // deletes everything up to it
//	q.Rewind()                              // connection lost: lease again from the oldest unacked
//	msgs, err = q.Read(after, 100)          // cursor read without leasing
//	stats := s.Stats()                      // depth, bytes, oldest age, loss counters
//
// # Guarantees
//
// Every Append, Ack and removal is one atomic kv commit that also writes the
// queue's meta record (head cursor, next seq, count, bytes, counters), so a
// crash at any point leaves messages and meta consistent, and Open reads
// only the meta records: start-up cost and memory do not grow with the
// backlog. Reads seek to the persisted head cursor, never to the bare
// prefix, so the tombstones of acknowledged messages are not scanned.
// Seqs start at 1 and strictly increase, across restarts too. Delivery is
// at least once: the lease cursor lives in memory, so after a restart or
// Rewind leasing starts again at the oldest unacknowledged message; the
// stable message id (the sender's, or NewID) lets the far end de-duplicate.
//
// Appends of one queue are committed in call order through a chain with at
// most one batch in kv at a time (everything queued meanwhile forms the next
// batch), while kv groups the batches of all queues into one transaction
// and, with Power durability, one sync. If a batch fails, the ops queued
// behind it fail too, so what callers were told always matches the disk.
//
// # Expiry
//
// A message's age is the smaller of its wall-clock age and its age on the
// store's elapsed clock: a runtime clock advanced only by the monotonic
// clock while the store is open and persisted (with every queue meta write
// and every SweepEvery), so a forward wall-clock jump cannot expire messages
// early. A wall clock that went back before the enqueue time is ignored.
// The trade-off: time while the device is powered off (or outpost is not
// running) is not counted, so expiry can come late, never early. Badger's
// own TTL is not used. Expired messages are removed when Lease or Read
// reaches them and, at each queue's head, by the periodic sweep; they are
// counted in Stats.Expired and logged, never silently lost.
//
// A Replicated store (Options.Replicated: the hub's raft state machine) has
// no elapsed clock and no sweep: a message's age is Now minus its enqueue
// time (0 while Now is behind it), reads skip expired messages without
// removing them, and Store.Expire removes them, called inside a replicated
// change whose time Now returns.
//
// # Caps
//
// Each queue may cap its record bytes and message count, and the store caps
// all queues together. On overflow a queue either rejects the new messages
// (Reject, the default: the error wraps ErrFull and names the cap and the
// option to raise) or deletes its own oldest messages (DropOldest; it never
// deletes another queue's messages). Both are counted (Stats.Rejected,
// Stats.Dropped) and persisted. Bytes are record bytes: body, properties and
// ids plus about 30 bytes of framing.
//
// # Disk
//
// With small records every message lives in Badger's LSM tree and deleted
// ones come back as disk only through a compaction. When every queue is
// empty after at least Options.ReclaimAfter bytes were deleted, the store
// asks kv.DB.Reclaim to compact; kv's own schedule covers the rest.
//
// With Options.Space (a store/disk monitor) every append is first charged
// to the disk: below the reserve it fails with ErrNoSpace, which wraps
// ErrFull, whatever the queue's Overflow (dropping gives no disk back before
// a compaction). Such refusals are counted in Stats.NoSpace and logged with
// the sweep. While the disk is low, acks reclaim after a quarter of
// ReclaimAfter without waiting for empty queues, so a drain lets ingest
// resume. Store.SetTotalMaxBytes changes the total cap at run time.
//
// # Goroutines
//
// Open starts two goroutines, both stopped by Close: one finishes commits
// (kv's writer only hands it results, so it never waits on a queue lock),
// runs the sweep and saves the clock; the other runs reclaims. Callbacks
// given to AppendAsync run on the first and must not block.
package queue
