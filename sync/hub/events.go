package hub

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// Layout:
//
//	e <seq u64>                                  → Event (CBOR)
//	l 's' <instance> 0 <queue> 0 <edge seq u64>  → digests of the messages stored under that edge seq
//	l 'c' <instance> 0 <queue> 0                 → highest edge seq received (u64), for Welcome
//	l 'd' <device> 0 <module> 0 <id> 0           → (older hubs) message-id keys; the sweep removes them
//	l 'n'                                        → the newest seq ever assigned (u64), kept by the sweep
//
// The events, their digests and the cursor of the edge queue they came from
// are written in one transaction, so a batch is in the log exactly once
// whatever crashes and retransmissions happen. A message is taken for one
// already stored only when its (instance, queue, edge seq) and its content
// match: never by the device's message id (devices reuse ids), never by
// the sequence number alone (two edges started from one cloned data
// directory share an instance and number their messages alike).

// Event is one device-to-cloud message in the hub's log.
type Event struct {
	Seq          uint64            `cbor:"-"`
	DeviceID     string            `cbor:"1,keyasint"`
	ModuleID     string            `cbor:"2,keyasint,omitempty"`
	EnqueuedTime int64             `cbor:"3,keyasint"` // unix ms at the hub
	MessageID    string            `cbor:"4,keyasint,omitempty"`
	Props        map[string]string `cbor:"5,keyasint,omitempty"`
	Sys          map[string]string `cbor:"6,keyasint,omitempty"`
	Body         []byte            `cbor:"7,keyasint,omitempty"`
	// Where it came from, so the retention sweep removes its digest:
	// the edge instance, its queue and sequence number, and the digest.
	Instance string `cbor:"8,keyasint,omitempty"`
	Queue    string `cbor:"9,keyasint,omitempty"`
	EdgeSeq  uint64 `cbor:"10,keyasint,omitempty"`
	Digest   []byte `cbor:"11,keyasint,omitempty"`
	// EdgePath names the edges that carried it, the one it entered through
	// first and the one that sent it to the hub last; none in events
	// stored before nested edges.
	EdgePath []string `cbor:"12,keyasint,omitempty"`
}

// EventJSON is an event as GET /messages/events returns it.
type EventJSON struct {
	Seq          uint64            `json:"seq"`
	DeviceID     string            `json:"deviceId"`
	ModuleID     string            `json:"moduleId,omitempty"`
	EnqueuedTime string            `json:"enqueuedTime"`
	MessageID    string            `json:"messageId,omitempty"`
	Properties   map[string]string `json:"properties"`
	System       map[string]string `json:"systemProperties"`
	EdgePath     []string          `json:"edgePath,omitempty"`
	Body         []byte            `json:"body"`
}

// JSON returns the REST shape of e.
func (e Event) JSON() EventJSON {
	j := EventJSON{Seq: e.Seq, DeviceID: e.DeviceID, ModuleID: e.ModuleID, MessageID: e.MessageID,
		EnqueuedTime: time.UnixMilli(e.EnqueuedTime).UTC().Format("2006-01-02T15:04:05.000Z"),
		Properties:   e.Props, System: e.Sys, Body: e.Body, EdgePath: e.EdgePath}
	if j.Properties == nil {
		j.Properties = map[string]string{}
	}
	if j.System == nil {
		j.System = map[string]string{}
	}
	if j.Body == nil {
		j.Body = []byte{}
	}
	return j
}

type eventLog struct {
	db *kv.DB

	mu     sync.Mutex
	last   uint64
	notify chan struct{}
	closed bool
}

func eventKey(seq uint64) []byte { return kv.AppendUint64([]byte{kv.PrefixEvent}, seq) }

func dedupKey(device, module, id string) []byte {
	k := kv.AppendString([]byte{kv.PrefixLink, 'd'}, device)
	return kv.AppendString(kv.AppendString(k, module), id)
}

// seqKey holds the digests of the messages stored under one edge sequence
// number: one, unless two edges share an instance.
func seqKey(instance, queue string, seq uint64) []byte {
	return kv.AppendUint64(seqPrefix(instance, queue), seq)
}

func seqPrefix(instance, queue string) []byte {
	return kv.AppendString(kv.AppendString([]byte{kv.PrefixLink, 's'}, instance), queue)
}

// storedDigests reads the digest lists of one edge queue for ascending
// sequence numbers through one iterator: a batch of consecutive messages
// costs one seek and a step per message, not a lookup per message, and
// messages past everything stored (the usual case) cost nothing more.
type storedDigests struct {
	it     *badger.Iterator
	prefix []byte
	done   bool // the iterator has passed every stored key
}

func newStoredDigests(txn *badger.Txn, instance, queue string) *storedDigests {
	prefix := seqPrefix(instance, queue)
	return &storedDigests{it: txn.NewIterator(badger.IteratorOptions{Prefix: prefix}), prefix: prefix}
}

// get returns the list stored under seq (nil if none); seq must be
// greater than in the call before.
func (s *storedDigests) get(seq uint64) ([]byte, error) {
	if s.done {
		return nil, nil
	}
	key := kv.AppendUint64(s.prefix[:len(s.prefix):len(s.prefix)], seq)
	if !s.it.Valid() || bytes.Compare(s.it.Item().Key(), key) < 0 {
		if s.it.Seek(key); !s.it.Valid() {
			s.done = true
			return nil, nil
		}
	}
	if !bytes.Equal(s.it.Item().Key(), key) {
		return nil, nil
	}
	list, err := s.it.Item().ValueCopy(nil)
	s.it.Next() // where the next seq's list is, when seqs are consecutive
	return list, err
}

func (s *storedDigests) close() { s.it.Close() }

// digestSize is the length of a message digest (protocol.DigestSize).
const digestSize = protocol.DigestSize

// hasDigest reports whether list (digests end to end) holds d.
func hasDigest(list, d []byte) bool {
	for i := 0; i+digestSize <= len(list); i += digestSize {
		if bytes.Equal(list[i:i+digestSize], d) {
			return true
		}
	}
	return false
}

// dropDigest returns list without d.
func dropDigest(list, d []byte) []byte {
	out := make([]byte, 0, len(list))
	for i := 0; i+digestSize <= len(list); i += digestSize {
		if !bytes.Equal(list[i:i+digestSize], d) {
			out = append(out, list[i:i+digestSize]...)
		}
	}
	return out
}

func getBytes(txn *badger.Txn, key []byte) ([]byte, error) {
	item, err := txn.Get(key)
	if err == badger.ErrKeyNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

func cursorKey(instance, queue string) []byte {
	return kv.AppendString(kv.AppendString([]byte{kv.PrefixLink, 'c'}, instance), queue)
}

// lastSeqKey holds the newest seq ever assigned once the sweep removed
// events: a log the sweep emptied does not number from 1 again.
var lastSeqKey = []byte{kv.PrefixLink, 'n'}

func openEventLog(db *kv.DB) (*eventLog, error) {
	l := &eventLog{db: db, notify: make(chan struct{})}
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kv.PrefixEvent}, Reverse: true})
		defer it.Close()
		it.Seek(kv.PrefixEnd([]byte{kv.PrefixEvent}))
		if it.ValidForPrefix([]byte{kv.PrefixEvent}) {
			l.last = binary.BigEndian.Uint64(it.Item().Key()[1:])
		}
		swept, _, err := getUint(txn, lastSeqKey)
		l.last = max(l.last, swept)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open event log: %w", err)
	}
	return l, nil
}

func (l *eventLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.notify)
	}
}

// Last is the seq of the newest event (0 when empty).
func (l *eventLog) Last() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// wait returns a channel closed when events after the call are appended.
func (l *eventLog) wait() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.notify
}

// append writes evs with ops in one transaction, numbering them after the
// last event. Callers serialise appends (Hub.mu).
func (l *eventLog) append(ctx context.Context, evs []Event, ops []kv.Op) error {
	l.mu.Lock()
	next := l.last
	l.mu.Unlock()
	for i := range evs {
		next++
		evs[i].Seq = next
		v, err := kv.Marshal(&evs[i])
		if err != nil {
			return err
		}
		ops = append(ops, kv.Set(eventKey(next), v))
	}
	if err := l.db.Commit(ctx, ops...); err != nil {
		return fmt.Errorf("append to the event log: %w", err)
	}
	if len(evs) > 0 {
		l.mu.Lock()
		l.last = next
		if !l.closed {
			close(l.notify)
			l.notify = make(chan struct{})
		}
		l.mu.Unlock()
	}
	return nil
}

// read returns up to limit events with seq >= from, in order.
func (l *eventLog) read(from uint64, limit int) ([]Event, error) {
	var out []Event
	err := l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kv.PrefixEvent}, PrefetchValues: true, PrefetchSize: min(limit, 100)})
		defer it.Close()
		for it.Seek(eventKey(max(from, 1))); it.ValidForPrefix([]byte{kv.PrefixEvent}) && len(out) < limit; it.Next() {
			var e Event
			err := it.Item().Value(func(v []byte) error { return kv.Unmarshal(v, &e) })
			if err != nil {
				return err
			}
			e.Seq = binary.BigEndian.Uint64(it.Item().Key()[1:])
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

func getUint(txn *badger.Txn, key []byte) (uint64, bool, error) {
	item, err := txn.Get(key)
	if err == badger.ErrKeyNotFound {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	var v uint64
	err = item.Value(func(b []byte) error {
		if len(b) != 8 {
			return fmt.Errorf("record %q is %d bytes, want 8", key, len(b))
		}
		v = binary.BigEndian.Uint64(b)
		return nil
	})
	return v, true, err
}

func putUint(key []byte, v uint64) kv.Op { return kv.Set(key, kv.AppendUint64(nil, v)) }

// appendEventsLocked is the command that stores a batch from an edge
// queue. A message whose (instance, queue, seq) and content digest are
// already stored is acknowledged without being stored again (a
// retransmission); one whose (instance, queue, seq) was stored with other
// content is stored, counted and reported as a collision (two edges share
// the instance). A device's message id is carried, never a reason to drop.
// Messages from identities outside the edge's scope, or whose edge path
// is not the way up from their source to the edge (tree.checkPath), are
// refused, counted and logged (and acknowledged, so one bad message cannot
// block the queue behind it). The event records the edge path with the
// sending edge at its end (not for a version 2 command: events stored
// before nested edges have none).
func (f *FSM) appendEventsLocked(ctx context.Context, c appendEvents) (protocol.MessagesAck, error) {
	m := c.Frame
	inScope, err := f.inScope(c.Edge)
	if err != nil {
		return protocol.MessagesAck{}, err
	}
	for i := 1; i < len(m.Msgs); i++ {
		if m.Msgs[i].Seq <= m.Msgs[i-1].Seq {
			return protocol.MessagesAck{}, fmt.Errorf("%w: messages of queue %q out of order (seq %d after %d)", ErrInvalid, m.Queue, m.Msgs[i].Seq, m.Msgs[i-1].Seq)
		}
	}
	var b batchPlan
	err = f.db.View(func(txn *badger.Txn) error { return f.planBatch(txn, c, inScope, &b) })
	if err != nil {
		return protocol.MessagesAck{}, err
	}
	if len(b.evs) > 0 || b.cursor != b.oldCursor {
		if b.cursor != b.oldCursor {
			b.ops = append(b.ops, putUint(cursorKey(m.Instance, m.Queue), b.cursor))
		}
		if err := f.events.append(ctx, b.evs, b.ops); err != nil {
			return protocol.MessagesAck{}, err
		}
	}
	b.ack.Appended = len(b.evs)
	f.metrics.eventsAppended.Add(int64(len(b.evs)))
	f.metrics.eventsDuplicate.Add(int64(b.ack.Duplicates))
	if b.collisions > 0 {
		f.metrics.instanceCollisions.Add(int64(b.collisions))
		f.logCollision(c, b)
	}
	return b.ack, nil
}

// batchPlan is what a batch changes, worked out before it is written.
type batchPlan struct {
	ack               protocol.MessagesAck
	evs               []Event
	ops               []kv.Op
	oldCursor, cursor uint64
	collisions        int
	firstCollision    uint64 // edge seq of the first collision
}

func (f *FSM) planBatch(txn *badger.Txn, c appendEvents, inScope func(string) bool, b *batchPlan) error {
	m := c.Frame
	var err error
	if b.oldCursor, _, err = getUint(txn, cursorKey(m.Instance, m.Queue)); err != nil {
		return err
	}
	b.cursor, b.ack.UpTo = b.oldCursor, b.oldCursor
	digests := newStoredDigests(txn, m.Instance, m.Queue)
	defer digests.close()
	if c.Digests != nil && len(c.Digests) != len(m.Msgs)*digestSize {
		return fmt.Errorf("%w: %d bytes of digests for %d messages", ErrInvalid, len(c.Digests), len(m.Msgs))
	}
	for i, msg := range m.Msgs {
		b.ack.UpTo, b.cursor = msg.Seq, max(b.cursor, msg.Seq)
		dev, mod, ok := protocol.SplitSource(msg.Source)
		id := dev
		if mod != "" {
			id += "/" + mod
		}
		if !ok || !inScope(id) {
			f.metrics.eventsRefused.Add(1)
			b.ack.Refused++
			if ok, held := f.refusedLog.Allow("scope"); ok {
				f.log.Warn("message refused: its source is not in the edge's scope", "edge", c.Edge, "source", msg.Source, "message_id", msg.ID,
					"refused_since_last_logged", held)
			}
			continue
		}
		if !f.tree().checkPath(c.Edge, msg.EdgePath, id) {
			f.metrics.eventsBadPath.Add(1)
			b.ack.Refused++
			if ok, held := f.refusedLog.Allow("path"); ok {
				f.log.Warn("message refused: its edge path is not the way from its source up to the edge", "edge", c.Edge, "source", msg.Source,
					"message_id", msg.ID, "edge_path", strings.Join(msg.EdgePath, ","), "refused_since_last_logged", held)
			}
			continue
		}
		if g := msg.Sys[protocol.SysGeneration]; g != "" {
			if cur, _, _ := f.ids.Get(id); cur.Generation != g {
				f.metrics.eventsStale.Add(1)
				b.ack.Refused++
				if ok, held := f.refusedLog.Allow("generation"); ok {
					f.log.Warn("message refused: sent by a deleted generation of its identity", "edge", c.Edge, "source", msg.Source,
						"message_id", msg.ID, "generation", g, "current_generation", cur.Generation, "refused_since_last_logged", held)
				}
				continue
			}
		}
		d, err := c.digest(i)
		if err != nil {
			return err
		}
		stored, err := digests.get(msg.Seq)
		if err != nil {
			return err
		}
		if hasDigest(stored, d) {
			b.ack.Duplicates++
			continue
		}
		if len(stored) > 0 {
			if b.collisions++; b.collisions == 1 {
				b.firstCollision = msg.Seq
			}
		}
		b.ops = append(b.ops, kv.Set(seqKey(m.Instance, m.Queue, msg.Seq), append(stored, d...)))
		sys := msg.Sys
		if msg.EnqueuedAt != 0 {
			sys = cloneMap(sys)
			sys["edgeEnqueuedTime"] = time.UnixMilli(msg.EnqueuedAt).UTC().Format(time.RFC3339Nano)
		}
		var path []string
		if c.Version >= 3 {
			path = append(slices.Clip(msg.EdgePath), c.Edge)
		}
		b.evs = append(b.evs, Event{DeviceID: dev, ModuleID: mod, EnqueuedTime: f.at.Load(), MessageID: msg.ID, Props: msg.Props, Sys: sys, Body: msg.Body,
			Instance: m.Instance, Queue: m.Queue, EdgeSeq: msg.Seq, Digest: d, EdgePath: path})
	}
	b.ack.Collisions = b.collisions
	return nil
}

// collisionLogEvery: at most one ERROR line per instance this often (ms,
// on the commands' clock) about messages that collided.
const collisionLogEvery = 60_000

// logCollision reports two edges sharing one instance, rate-limited per
// instance by the command's time (never the wall clock: commands are
// deterministic). Hub.mu is held.
func (f *FSM) logCollision(c appendEvents, b batchPlan) {
	inst := c.Frame.Instance
	at := f.at.Load()
	if last, ok := f.collisionLogged[inst]; ok && at-last < collisionLogEvery {
		return
	}
	for i, last := range f.collisionLogged { // keep only the instances still held back
		if at-last >= collisionLogEvery {
			delete(f.collisionLogged, i)
		}
	}
	f.collisionLogged[inst] = at
	f.log.Error("two edges send under one instance id (a cloned data directory?): messages with the same sequence number and different content; both are stored",
		"edge", c.Edge, "instance", inst, "queue", c.Frame.Queue, "messages", b.collisions, "first_seq", b.firstCollision,
		"total", f.metrics.instanceCollisions.Load())
}

// cursors returns the queue cursors of an edge incarnation.
func (h *Hub) cursors(instance string) (map[string]uint64, error) {
	out := map[string]uint64{}
	prefix := kv.AppendString([]byte{kv.PrefixLink, 'c'}, instance)
	err := h.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			q := strings.TrimSuffix(string(it.Item().Key()[len(prefix):]), "\x00")
			err := it.Item().Value(func(b []byte) error {
				if len(b) != 8 {
					return fmt.Errorf("cursor of queue %q is %d bytes, want 8", q, len(b))
				}
				out[q] = binary.BigEndian.Uint64(b)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Events returns up to limit events with seq >= from.
func (h *Hub) Events(from uint64, limit int) ([]Event, error) { return h.events().read(from, limit) }

// LastSeq is the seq of the newest event in the log (0 when empty).
func (h *Hub) LastSeq() uint64 { return h.events().Last() }

// expireEvents removes the events stored before Before (unix ms), oldest
// first, at most Max of them, with their de-duplication keys.
type expireEvents struct {
	Before int64 `cbor:"1,keyasint"`
	Max    int   `cbor:"2,keyasint"`
}

func (f *FSM) expireEventsLocked(ctx context.Context, c expireEvents) (int, error) {
	var ops []kv.Op
	n := 0
	lists := map[string][]byte{} // digest lists as this sweep leaves them
	var order []string
	err := f.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kv.PrefixEvent}, PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid() && n < c.Max; it.Next() {
			var e Event
			if err := it.Item().Value(func(v []byte) error { return kv.Unmarshal(v, &e) }); err != nil {
				return err
			}
			if e.EnqueuedTime >= c.Before {
				break
			}
			n++
			ops = append(ops, kv.Del(it.Item().KeyCopy(nil)))
			if e.Instance == "" {
				if e.MessageID != "" { // stored by an older hub, with a message-id key
					ops = append(ops, kv.Del(dedupKey(e.DeviceID, e.ModuleID, e.MessageID)))
				}
				continue
			}
			sk := string(seqKey(e.Instance, e.Queue, e.EdgeSeq))
			list, seen := lists[sk]
			if !seen {
				var err error
				if list, err = getBytes(txn, []byte(sk)); err != nil {
					return err
				}
				order = append(order, sk)
			}
			lists[sk] = dropDigest(list, e.Digest)
		}
		return nil
	})
	if err != nil || n == 0 {
		return 0, err
	}
	ops = append(ops, putUint(lastSeqKey, f.events.Last()))
	for _, sk := range order {
		if l := lists[sk]; len(l) == 0 {
			ops = append(ops, kv.Del([]byte(sk)))
		} else {
			ops = append(ops, kv.Set([]byte(sk), l))
		}
	}
	return n, f.db.Commit(ctx, ops...)
}

// sweep removes events older than the retention, every minute (or a tenth
// of the retention, if shorter), counting and logging what it removed.
func (h *Hub) sweep() {
	defer h.sweeper.Done()
	every := min(time.Minute, h.opts.Retention/10)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case <-t.C:
		}
		if !h.leads() {
			continue // the leader proposes the sweep for the cluster
		}
		total := 0
		for {
			before := h.opts.Now().Add(-h.opts.Retention).UnixMilli()
			res, err := h.applyResult(context.Background(), expireEvents{Before: before, Max: 1000})
			n, _ := res.(int)
			total += n
			if err != nil {
				h.log.Error("event retention", "err", err)
				break
			}
			if n < 1000 {
				break
			}
		}
		if total > 0 {
			h.metrics.eventsExpired.Add(int64(total))
			h.log.Info("events past the retention removed from the log", "events", total, "retention", h.opts.Retention)
		}
		h.expireC2D()
	}
}

// expireC2D proposes the removal of the cloud-to-device messages whose TTL
// passed (the state machine's queues run no sweeper of their own).
func (h *Hub) expireC2D() {
	total := 0
	for {
		res, err := h.applyResult(context.Background(), expireC2D{Max: 1000})
		n, _ := res.(int)
		total += n
		if err != nil {
			h.log.Error("cloud-to-device expiry", "err", err)
			break
		}
		if n < 1000 {
			break
		}
	}
	if total > 0 {
		h.log.Info("expired cloud-to-device messages removed", "messages", total)
	}
}
