package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/outpost-edge/outpost/store/kv"
	"pgregory.net/rapid"
)

// propModel is the obvious in-memory queue the store must behave like.
type propModel struct {
	msgs    []Message // stored, in order
	cursor  uint64    // lease cursor: last seq handed out since start or Rewind
	handed  uint64    // highest seq handed out since start
	acked   uint64
	lastSeq uint64
	n       int
}

type propMachine struct {
	t   *rapid.T
	dir string
	db  *kv.DB
	s   *Store
	q   *Queue
	m   propModel
}

func (p *propMachine) open(fullRestart bool) {
	if fullRestart || p.db == nil {
		db, err := kv.Open(p.dir, kv.Options{})
		if err != nil {
			p.t.Fatal(err)
		}
		p.db = db
	}
	s, err := Open(context.Background(), p.db, Options{})
	if err != nil {
		p.t.Fatal(err)
	}
	p.s = s
	if p.q, err = s.Queue("q", QueueOptions{}); err != nil {
		p.t.Fatal(err)
	}
}

func (p *propMachine) close(full bool) {
	if err := p.s.Close(); err != nil {
		p.t.Fatal(err)
	}
	if full {
		if err := p.db.Close(); err != nil {
			p.t.Fatal(err)
		}
		p.db = nil
	}
}

func (p *propMachine) Append(t *rapid.T) {
	k := rapid.IntRange(1, 5).Draw(t, "k")
	batch := make([]Message, k)
	for i := range batch {
		p.m.n++
		batch[i] = Message{Body: []byte(fmt.Sprint(p.m.n))}
		if rapid.Bool().Draw(t, "sender id") {
			batch[i].ID = fmt.Sprintf("s%d", p.m.n)
		}
	}
	seqs, err := p.q.Append(context.Background(), batch...)
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, p.q)
	got = got[len(got)-k:]
	for i, s := range seqs {
		if s <= p.m.lastSeq {
			t.Fatalf("seq %d not above %d", s, p.m.lastSeq)
		}
		p.m.lastSeq = s
		m := batch[i]
		m.Seq = s
		m.ID = got[i].ID
		if m.ID == "" || (batch[i].ID != "" && m.ID != batch[i].ID) {
			t.Fatalf("id of seq %d = %q, sent %q", s, m.ID, batch[i].ID)
		}
		p.m.msgs = append(p.m.msgs, m)
	}
}

func (p *propMachine) Lease(t *rapid.T) {
	max := rapid.IntRange(1, 8).Draw(t, "max")
	got, err := p.q.Lease(max, 0)
	if err != nil {
		t.Fatal(err)
	}
	var want []Message
	for _, m := range p.m.msgs {
		if m.Seq > p.m.cursor && len(want) < max {
			want = append(want, m)
		}
	}
	if !slices.Equal(seqsOf(got), seqsOf(want)) || !slices.Equal(ids(got), ids(want)) {
		t.Fatalf("lease(%d) = %v %v, want %v %v", max, seqsOf(got), ids(got), seqsOf(want), ids(want))
	}
	if len(got) > 0 {
		p.m.cursor = got[len(got)-1].Seq
		p.m.handed = max64(p.m.handed, p.m.cursor)
	}
}

func (p *propMachine) Ack(t *rapid.T) {
	upTo := rapid.Uint64Range(0, p.m.lastSeq+2).Draw(t, "upTo")
	err := p.q.Ack(context.Background(), upTo)
	if upTo > p.m.handed {
		if !errors.Is(err, ErrNotLeased) {
			t.Fatalf("ack %d beyond handed %d: %v", upTo, p.m.handed, err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	p.m.msgs = slices.DeleteFunc(p.m.msgs, func(m Message) bool { return m.Seq <= upTo })
	p.m.acked = max64(p.m.acked, upTo)
}

func (p *propMachine) Rewind(t *rapid.T) {
	p.q.Rewind()
	p.m.cursor = 0
}

func (p *propMachine) Restart(t *rapid.T) {
	full := rapid.Bool().Draw(t, "full")
	p.close(full)
	p.open(full)
	p.m.cursor = 0
	p.m.handed = p.m.acked
	if len(p.m.msgs) > 0 {
		p.m.handed = max64(p.m.acked, p.m.msgs[0].Seq-1)
	}
}

func (p *propMachine) Check(t *rapid.T) {
	got := readAll(t, p.q)
	if !slices.Equal(seqsOf(got), seqsOf(p.m.msgs)) || !slices.Equal(ids(got), ids(p.m.msgs)) {
		t.Fatalf("stored %v, model %v", seqsOf(got), seqsOf(p.m.msgs))
	}
	for i, m := range got {
		if string(m.Body) != string(p.m.msgs[i].Body) {
			t.Fatalf("body of %d = %q, want %q", m.Seq, m.Body, p.m.msgs[i].Body)
		}
	}
	if st := p.q.Stats(); st.Depth != int64(len(p.m.msgs)) {
		t.Fatalf("depth %d, model %d", st.Depth, len(p.m.msgs))
	}
}

func seqsOf(ms []Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

func max64(a, b uint64) uint64 { return max(a, b) }

// TestQueueModel drives random Append/Lease/Ack/Rewind/Restart sequences
// against the model: order is kept, nothing acked comes back, nothing
// unacked is lost, seqs only grow.
func TestQueueModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		dir, err := os.MkdirTemp(t.TempDir(), "model")
		if err != nil {
			rt.Fatal(err)
		}
		p := &propMachine{t: rt, dir: dir}
		p.open(true)
		defer p.close(true)
		rt.Repeat(rapid.StateMachineActions(p))
	})
}
