package hub

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// Layout:
//
//	e <seq u64>                          → Event (CBOR)
//	l 'd' <device> 0 <module> 0 <id> 0   → seq of the event (de-duplication)
//	l 'c' <instance> 0 <queue> 0         → highest edge seq applied (u64)
//
// The events, their de-duplication keys and the cursor of the edge queue
// they came from are written in one transaction, so a batch is in the log
// exactly once whatever crashes and retransmissions happen.

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
	Body         []byte            `json:"body"`
}

// JSON returns the REST shape of e.
func (e Event) JSON() EventJSON {
	j := EventJSON{Seq: e.Seq, DeviceID: e.DeviceID, ModuleID: e.ModuleID, MessageID: e.MessageID,
		EnqueuedTime: time.UnixMilli(e.EnqueuedTime).UTC().Format("2006-01-02T15:04:05.000Z"),
		Properties:   e.Props, System: e.Sys, Body: e.Body}
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

func cursorKey(instance, queue string) []byte {
	return kv.AppendString(kv.AppendString([]byte{kv.PrefixLink, 'c'}, instance), queue)
}

func openEventLog(db *kv.DB) (*eventLog, error) {
	l := &eventLog{db: db, notify: make(chan struct{})}
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kv.PrefixEvent}, Reverse: true})
		defer it.Close()
		it.Seek(kv.PrefixEnd([]byte{kv.PrefixEvent}))
		if it.ValidForPrefix([]byte{kv.PrefixEvent}) {
			l.last = binary.BigEndian.Uint64(it.Item().Key()[1:])
		}
		return nil
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

// splitSource reads "devices/d" or "devices/d/modules/m".
func splitSource(src string) (device, module string, ok bool) {
	rest, ok := strings.CutPrefix(src, "devices/")
	if !ok || rest == "" {
		return "", "", false
	}
	device, module, isModule := strings.Cut(rest, "/modules/")
	if device == "" || strings.Contains(device, "/") || isModule && (module == "" || strings.Contains(module, "/")) {
		return "", "", false
	}
	return device, module, true
}

// appendEvents is the command that stores a batch from an edge queue:
// messages at or below the queue's cursor, and messages whose (device,
// module, message id) is already in the log, are acknowledged without being
// stored again; messages from identities outside the edge's scope are
// refused, counted and logged (and acknowledged, so one bad message cannot
// block the queue behind it).
func (h *Hub) appendEventsLocked(ctx context.Context, c appendEvents) (protocol.MessagesAck, error) {
	edge, m := c.Edge, c.Frame
	inScope, err := h.inScope(edge)
	if err != nil {
		return protocol.MessagesAck{}, err
	}
	var ack protocol.MessagesAck
	for i := 1; i < len(m.Msgs); i++ {
		if m.Msgs[i].Seq <= m.Msgs[i-1].Seq {
			return ack, fmt.Errorf("%w: messages of queue %q out of order (seq %d after %d)", ErrInvalid, m.Queue, m.Msgs[i].Seq, m.Msgs[i-1].Seq)
		}
	}
	now := c.At
	var evs []Event
	var ops []kv.Op
	var cur uint64
	batch := map[string]bool{}
	err = h.db.View(func(txn *badger.Txn) error {
		var err error
		cur, _, err = getUint(txn, cursorKey(m.Instance, m.Queue))
		if err != nil {
			return err
		}
		ack.UpTo = cur
		for _, msg := range m.Msgs {
			if msg.Seq <= cur {
				ack.Duplicates++
				continue
			}
			ack.UpTo = msg.Seq
			dev, mod, ok := splitSource(msg.Source)
			id := dev
			if mod != "" {
				id += "/" + mod
			}
			if !ok || !inScope(id) {
				h.metrics.eventsRefused.Add(1)
				ack.Refused++
				h.log.Warn("message refused: its source is not in the edge's scope", "edge", edge, "source", msg.Source, "message_id", msg.ID)
				continue
			}
			if g := msg.Sys[protocol.SysGeneration]; g != "" {
				if cur, _, _ := h.ids.Get(id); cur.Generation != g {
					h.metrics.eventsStale.Add(1)
					ack.Refused++
					h.log.Warn("message refused: sent by a deleted generation of its identity", "edge", edge, "source", msg.Source,
						"message_id", msg.ID, "generation", g, "current_generation", cur.Generation)
					continue
				}
			}
			if msg.ID != "" {
				dk := dedupKey(dev, mod, msg.ID)
				if _, dup, err := getUint(txn, dk); err != nil {
					return err
				} else if dup || batch[string(dk)] {
					ack.Duplicates++
					continue
				}
				batch[string(dk)] = true
				ops = append(ops, putUint(dk, 0))
			}
			sys := msg.Sys
			if msg.EnqueuedAt != 0 {
				sys = cloneMap(sys)
				sys["edgeEnqueuedTime"] = time.UnixMilli(msg.EnqueuedAt).UTC().Format(time.RFC3339Nano)
			}
			evs = append(evs, Event{DeviceID: dev, ModuleID: mod, EnqueuedTime: now, MessageID: msg.ID, Props: msg.Props, Sys: sys, Body: msg.Body})
		}
		return nil
	})
	if err != nil {
		return ack, err
	}
	if ack.UpTo == cur {
		h.metrics.eventsDuplicate.Add(int64(ack.Duplicates))
		return ack, nil
	}
	ops = append(ops, putUint(cursorKey(m.Instance, m.Queue), ack.UpTo))
	if err := h.events.append(ctx, evs, ops); err != nil {
		return protocol.MessagesAck{}, err
	}
	ack.Appended = len(evs)
	h.metrics.eventsAppended.Add(int64(len(evs)))
	h.metrics.eventsDuplicate.Add(int64(ack.Duplicates))
	return ack, nil
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
func (h *Hub) Events(from uint64, limit int) ([]Event, error) { return h.events.read(from, limit) }

// LastSeq is the seq of the newest event in the log (0 when empty).
func (h *Hub) LastSeq() uint64 { return h.events.Last() }

// expireEvents removes the events stored before Before (unix ms), oldest
// first, at most Max of them, with their de-duplication keys.
type expireEvents struct {
	Before int64 `cbor:"1,keyasint"`
	Max    int   `cbor:"2,keyasint"`
}

func (h *Hub) expireEventsLocked(ctx context.Context, c expireEvents) (int, error) {
	var ops []kv.Op
	err := h.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kv.PrefixEvent}, PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(ops) < 2*c.Max; it.Next() {
			var e Event
			if err := it.Item().Value(func(v []byte) error { return kv.Unmarshal(v, &e) }); err != nil {
				return err
			}
			if e.EnqueuedTime >= c.Before {
				break
			}
			ops = append(ops, kv.Del(it.Item().KeyCopy(nil)))
			if e.MessageID != "" {
				ops = append(ops, kv.Del(dedupKey(e.DeviceID, e.ModuleID, e.MessageID)))
			}
		}
		return nil
	})
	if err != nil || len(ops) == 0 {
		return 0, err
	}
	n := 0
	for _, op := range ops {
		if op.Key[0] == kv.PrefixEvent {
			n++
		}
	}
	return n, h.db.Commit(ctx, ops...)
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
	}
}
