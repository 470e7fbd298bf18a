package upstream

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// hostileHub stands in for an attacker on the link in front of the real
// hub: it passes hellos and pulls through but answers them with cursors and
// version vectors that claim far more than the edge sent, swallows message
// batches and twin deltas, and acknowledges them beyond what was sent. An
// edge that believed it would discard its backlog and collect tombstones
// the hub never saw.
type hostileHub struct {
	t              *testing.T
	e              *env
	self           crdt.ReplicaID
	batches, twins atomic.Int64
}

const ahead = 1 << 20 // how far ahead of the edge the hostile answers claim to be

func (h *hostileHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case protocol.PathHello:
		var wel protocol.Welcome
		if !h.forward(w, r, &wel) {
			return
		}
		wel.Cursors = map[string]uint64{}
		for _, q := range upstreamQueues() {
			wel.Cursors[q] = ahead
		}
		wel.TwinVV = h.inflate(wel.TwinVV)
		h.answer(w, &wel)
	case protocol.PathPull:
		var push protocol.Push
		if !h.forward(w, r, &push) {
			return
		}
		push.TwinVV = h.inflate(push.TwinVV)
		h.answer(w, &push)
	case protocol.PathMessages:
		var m protocol.Messages
		if err := protocol.Decode(r.Body, r.Header.Get("Content-Encoding"), &m); err != nil || len(m.Msgs) == 0 {
			h.t.Errorf("hostile hub: messages frame: %v", err)
			return
		}
		h.batches.Add(1)
		h.answer(w, &protocol.MessagesAck{UpTo: m.Msgs[len(m.Msgs)-1].Seq + ahead, Appended: len(m.Msgs)})
	case protocol.PathTwins:
		h.twins.Add(1)
		hub := h.e.hub.TwinStore()
		h.answer(w, &protocol.TwinsAck{TwinVV: h.inflate(hub.VV()), Hub: string(hub.Replica())})
	default:
		h.e.hub.Handler().ServeHTTP(w, r)
	}
}

// forward has the real hub answer r and decodes its frame into out; an
// error answer is passed on as it is (false).
func (h *hostileHub) forward(w http.ResponseWriter, r *http.Request, out any) bool {
	rec := httptest.NewRecorder()
	h.e.hub.Handler().ServeHTTP(rec, r)
	if rec.Code != http.StatusOK {
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		return false
	}
	if err := protocol.Decode(rec.Body, rec.Header().Get("Content-Encoding"), out); err != nil {
		h.t.Errorf("hostile hub: decode the answer to %s: %v", r.URL.Path, err)
		return false
	}
	return true
}

func (h *hostileHub) inflate(vv crdt.VV) crdt.VV {
	vv = vv.Clone()
	if vv == nil {
		vv = crdt.VV{}
	}
	vv[h.self] += ahead
	return vv
}

func (h *hostileHub) answer(w http.ResponseWriter, v any) {
	body, enc, err := protocol.Encode(v)
	if err != nil {
		h.t.Errorf("hostile hub: encode: %v", err)
		return
	}
	w.Header().Set("Content-Type", protocol.ContentType)
	if enc != "" {
		w.Header().Set("Content-Encoding", enc)
	}
	_, _ = w.Write(body)
}

// TestHostileHubAnswersIgnored: whatever cursors, acknowledgements and
// version vectors a hub answers with, the edge removes from its queue only
// what a hub acknowledged as the batch it was sent, and keeps the twin
// writes (a delete's tombstone too) that the hub claims without having
// them; once the real hub is back, all of it arrives.
func TestHostileHubAnswersIgnored(t *testing.T) {
	var logs lockedBuffer
	e := newEnvWith(t, func(e *env) {
		var err error
		e.link, err = New(Options{URL: e.srv.URL, Edge: e.edgeCS, DB: e.db, Queues: e.queues, Twins: e.twins, Identities: e.ids,
			Target: e.rec, PullWait: time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
	})
	eventually(t, "the twin of dev1", func() bool { _, err := e.twins.Get("dev1"); return err == nil })
	session, _ := e.twins.BeginSession()
	if _, err := e.twins.PatchReported(e.ctx, "dev1", session, []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	e.waitSynced(t)

	h := &hostileHub{t: t, e: e, self: e.twins.Replica()}
	mux := http.NewServeMux()
	mux.Handle("/", h)
	e.serve(mux)
	e.srv.CloseClientConnections() // ends the pull held by the real hub: the next goes through h
	q, err := e.queues.Queue("$upstream/pdefault", queue.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := q.Append(e.ctx, queue.Message{ID: fmt.Sprint(i), Source: "devices/dev1", Body: []byte(fmt.Sprint("m", i))}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.twins.PatchReported(e.ctx, "dev1", session, []byte(`{"a":null}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a batch and a twin delta sent", func() bool { return h.batches.Load() >= 1 && h.twins.Load() >= 1 })
	eventually(t, "a hostile pull answered", func() bool { return e.link.Status().HubAnswersIgnored >= 4 })
	if d := q.Stats().Depth; d != 3 {
		t.Fatalf("queue depth %d after the hostile hub's acknowledgements, want 3", d)
	}
	if n, _ := e.twins.Tombstones("dev1"); n == 0 {
		t.Fatalf("the tombstone of reported.a was collected on the hostile hub's word (collected: %d)", e.link.Status().TombstonesGC)
	}
	if acked := e.twins.Acked("hub").VV[h.self]; acked > e.twins.VV()[h.self] {
		t.Fatalf("the hub's ack holds %d of this edge's writes, it made %d", acked, e.twins.VV()[h.self])
	}

	// A hub that keeps answering so is not a reason to flood the log: one
	// line per kind of answer every 10 s, and the link stays up.
	mark := len(logs.String())
	time.Sleep(1500 * time.Millisecond)
	out := logs.String()[mark:]
	if n := strings.Count(out, "ignored_since_last_logged"); n > 4 {
		t.Errorf("%d log lines about ignored answers in 1.5 s, want at most 4 (one per kind):\n%s", n, out)
	}
	if strings.Contains(out, "link offline") || strings.Contains(out, "link online") {
		t.Errorf("the link went up and down over ignored answers:\n%s", out)
	}

	e.serve(e.hub.Handler()) // the real hub is back
	eventually(t, "the backlog delivered", func() bool { return q.Stats().Depth == 0 })
	var bodies [][]byte
	for _, ev := range readEvents(t, e) {
		bodies = append(bodies, ev.Body)
	}
	if len(bodies) != 3 || !bytes.Equal(bodies[0], []byte("m0")) || !bytes.Equal(bodies[2], []byte("m2")) {
		t.Fatalf("events at the hub %q, want m0 m1 m2", bodies)
	}
	eventually(t, "the delete at the hub", func() bool {
		v, err := e.hub.TwinStore().Get("dev1")
		return err == nil && v.Reported["a"] == nil
	})
}

// lockedBuffer is a log destination safe for the link's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
