package downstream

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// cursorPrefix starts the keys of the children's cursors:
// l D <instance> 0 <queue> → the highest sequence number taken.
var cursorPrefix = []byte{kv.PrefixLink, 'D'}

// digestWindow is how many of a child's latest sequence numbers per
// incarnation and queue keep the digest of their message: a child sends
// again at most the batch whose answer it lost (at most 1000 messages), so
// a message at or below the cursor is a resend when its digest matches and
// a clone's when it does not, or when it is older than the window.
const digestWindow = 10000

// digestPrefix starts the keys of the digests of the children's latest
// messages: l F <instance> 0 <queue> 0 <seq u64> → the message's digest.
var digestPrefix = []byte{kv.PrefixLink, 'F'}

func digestKey(k cursorKey, seq uint64) []byte {
	return kv.AppendUint64(kv.AppendString(kv.AppendString(slices.Clone(digestPrefix), k.instance), k.queue), seq)
}

// seenDigest reports whether the message this incarnation sent under seq
// had digest d.
func (s *Server) seenDigest(k cursorKey, seq uint64, d []byte) (bool, error) {
	var same bool
	err := s.opts.DB.View(func(txn *badger.Txn) error {
		item, err := txn.Get(digestKey(k, seq))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { same = bytes.Equal(v, d); return nil })
	})
	return same, err
}

func cursorDBKey(k cursorKey) []byte {
	return kv.AppendString(kv.AppendString(slices.Clone(cursorPrefix), k.instance), k.queue)
}

func (s *Server) loadCursors() error {
	return s.opts.DB.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: cursorPrefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			parts := strings.Split(string(item.Key()[len(cursorPrefix):]), "\x00")
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if len(parts) != 3 || parts[2] != "" || len(v) != 8 {
				return fmt.Errorf("downstream cursor %x: malformed record", item.Key())
			}
			s.cursors[cursorKey{parts[0], parts[1]}] = binary.BigEndian.Uint64(v)
		}
		return nil
	})
}

// upstreamQueue reports whether name is one of the $upstream queues.
func upstreamQueue(name string) bool {
	p, ok := strings.CutPrefix(name, "$upstream/p")
	return ok && (p == "default" || len(p) == 1 && p[0] >= '0' && p[0] <= '9')
}

// unacceptable says why a child's message may not be queued ("" if it may).
func (s *Server) unacceptable(child string, m protocol.Message) string {
	d, mod, ok := protocol.SplitSource(m.Source)
	id := d
	if mod != "" {
		id += "/" + mod
	}
	if !ok || !s.inSubtree(child, id) {
		return fmt.Sprintf("source %q is not in the subtree of edge %q", m.Source, child)
	}
	if len(m.EdgePath) >= MaxDepth {
		return fmt.Sprintf("crossed %d edges; at most %d", len(m.EdgePath)+1, MaxDepth)
	}
	for _, e := range m.EdgePath {
		if e == child || !s.inSubtree(child, e) {
			return fmt.Sprintf("edge path %v: %q is not an edge below %q", m.EdgePath, e, child)
		}
	}
	return ""
}

func (s *Server) lock(k cursorKey) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.locks[k]
	if l == nil {
		l = &sync.Mutex{}
		s.locks[k] = l
	}
	return l
}

// messagesFrame queues a child's batch, with its cursor in the same commit.
func (s *Server) messagesFrame(ctx context.Context, child string, m protocol.Messages) (protocol.MessagesAck, error) {
	if err := checkInstance(child, m.Instance); err != nil {
		return protocol.MessagesAck{}, err
	}
	if !upstreamQueue(m.Queue) {
		return protocol.MessagesAck{}, invalid("queue %q is not an $upstream queue", m.Queue)
	}
	if len(m.Msgs) == 0 {
		return protocol.MessagesAck{}, nil
	}
	k := cursorKey{m.Instance, m.Queue}
	if err := s.makeRoom(ctx, child, m.Instance); err != nil {
		return protocol.MessagesAck{}, err
	}
	l := s.lock(k)
	l.Lock()
	defer l.Unlock()
	s.mu.Lock()
	cur := s.cursors[k]
	s.mu.Unlock()
	var ack protocol.MessagesAck
	var take []queue.Message
	var marks []kv.Op // the digests of what this frame settles, and the ones that leave the window
	prev := uint64(0)
	for _, msg := range m.Msgs {
		if msg.Seq <= prev {
			return protocol.MessagesAck{}, invalid("sequence numbers not increasing (%d after %d)", msg.Seq, prev)
		}
		prev = msg.Seq
		d, err := protocol.Digest(msg)
		if err != nil {
			return protocol.MessagesAck{}, invalid("message %d: %v", msg.Seq, err)
		}
		if msg.Seq <= cur {
			same, err := s.seenDigest(k, msg.Seq, d)
			if err != nil {
				return protocol.MessagesAck{}, err
			}
			if same {
				ack.Duplicates++
				continue
			}
			// Another message under a sequence number this incarnation has
			// used: a copy of the child's data directory sends under its
			// instance. Taken, not dropped (as the hub does).
			ack.Collisions++
			s.warn("collision", "a child edge sent another message under a sequence number already taken: another edge runs from a copy of its data directory",
				"child", child, "instance", m.Instance, "queue", m.Queue, "seq", msg.Seq)
		} else {
			marks = append(marks, kv.Set(digestKey(k, msg.Seq), d))
			if msg.Seq > digestWindow {
				marks = append(marks, kv.Del(digestKey(k, msg.Seq-digestWindow)))
			}
		}
		if why := s.unacceptable(child, msg); why != "" {
			ack.Refused++
			s.warn("message", "message from a child edge refused", "child", child, "seq", msg.Seq, "reason", why)
			continue
		}
		path := append(slices.Clone(msg.EdgePath), child)
		take = append(take, queue.Message{ID: msg.ID, Source: msg.Source, Props: msg.Props, Sys: msg.Sys, Body: msg.Body, EdgePath: path})
	}
	ack.UpTo = prev
	if len(take) > 0 || prev > cur {
		if prev > cur {
			marks = append(marks, kv.Set(cursorDBKey(k), kv.AppendUint64(nil, prev)))
		}
		if err := s.store(ctx, m.Queue, take, marks); err != nil {
			return protocol.MessagesAck{}, err
		}
		s.mu.Lock()
		s.cursors[k] = max(cur, prev)
		s.mu.Unlock()
	}
	ack.Appended = len(take)
	s.seen(child, m.Instance, func(c *Child) { c.Messages += int64(len(take)) })
	s.batches.Add(1)
	s.messages.Add(int64(len(take)))
	s.duplicates.Add(int64(ack.Duplicates))
	s.refused.Add(int64(ack.Refused))
	s.collisions.Add(int64(ack.Collisions))
	return ack, nil
}

// maxIncarnations bounds the incarnations of one child whose cursors and
// digests are kept (a child gets a new one each time its data directory is
// wiped or moved): past it the one that sent last longest ago is forgotten,
// as the hub forgets an edge's old incarnations.
const maxIncarnations = 16

// makeRoom records that instance of child sends now and, when it is new and
// the child has maxIncarnations already, forgets the least recently used
// one: its cursors and digests, durably.
func (s *Server) makeRoom(ctx context.Context, child, instance string) error {
	s.mu.Lock()
	_, known := s.used[instance]
	s.used[instance] = s.opts.Now()
	if known { // the common case, every frame: nothing to count
		s.mu.Unlock()
		return nil
	}
	var mine []string
	seen := map[string]bool{}
	for k := range s.cursors {
		if k.instance != instance && !seen[k.instance] && twin.IsEdgeReplica(crdt.ReplicaID(k.instance), child) {
			seen[k.instance] = true
			mine = append(mine, k.instance)
		}
	}
	if len(mine) < maxIncarnations {
		s.mu.Unlock()
		return nil
	}
	oldest := slices.MinFunc(mine, func(a, b string) int { return s.used[a].Compare(s.used[b]) })
	var ops []kv.Op
	for k := range s.cursors {
		if k.instance == oldest {
			ops = append(ops, kv.Del(cursorDBKey(k)))
			delete(s.cursors, k)
			delete(s.locks, k)
		}
	}
	delete(s.used, oldest)
	s.mu.Unlock()
	prefix := kv.AppendString(slices.Clone(digestPrefix), oldest)
	err := s.opts.DB.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			ops = append(ops, kv.Del(it.Item().KeyCopy(nil)))
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.opts.Logger.Info("a child edge's oldest incarnation forgotten (its cursors and digests)", "child", child, "instance", oldest, "limit", maxIncarnations)
	for len(ops) > 0 { // in commits of a bounded size
		n := min(len(ops), 1000)
		if err := s.opts.DB.Commit(ctx, ops[:n]...); err != nil {
			return err
		}
		ops = ops[n:]
	}
	return nil
}

// store appends msgs to the named queue with marks (the child's cursor and
// digests) in the same commit, or writes the marks alone when nothing is
// taken; durable when it returns nil.
func (s *Server) store(ctx context.Context, name string, msgs []queue.Message, marks []kv.Op) error {
	if len(msgs) == 0 {
		return s.opts.DB.Commit(ctx, marks...)
	}
	q, ok := s.opts.Queues.Lookup(name)
	if !ok {
		var err error
		if q, err = s.opts.Queues.Queue(name, queue.QueueOptions{}); err != nil {
			return err
		}
	}
	ch := make(chan error, 1)
	q.AppendAsyncWith(msgs, marks, func(_ []uint64, err error) { ch <- err })
	// Not cut short by ctx: the commit ends in bounded time, and the cursor
	// kept in memory must say whether it happened before the next frame of
	// this incarnation is looked at (under the same lock).
	err := <-ch
	switch {
	case errors.Is(err, queue.ErrFull), errors.Is(err, queue.ErrNoSpace):
		return &statusError{http.StatusInsufficientStorage, "QueueFull",
			fmt.Errorf("edge %q cannot hold more (%v); the child keeps its backlog and sends it again later", s.opts.Edge, err)}
	case errors.Is(err, queue.ErrTooLarge):
		return &statusError{http.StatusRequestEntityTooLarge, "TooLarge", err}
	}
	return err
}
