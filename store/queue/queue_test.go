package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var bg = context.Background()

func TestAppendRead(t *testing.T) {
	e := newEnv(t, Options{})
	q := e.queue("upstream/0", QueueOptions{})
	if got := mustAppend(t, q, msg(1)); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("first seq = %v, want [1]", got)
	}
	if got := mustAppend(t, q, msgs(2, 3)...); !slices.Equal(got, []uint64{2, 3, 4}) {
		t.Fatalf("batch seqs = %v", got)
	}
	if seqs, err := q.Append(bg); err != nil || len(seqs) != 0 {
		t.Fatalf("empty append = %v, %v", seqs, err)
	}
	tests := []struct {
		after uint64
		max   int
		want  []string
	}{
		{0, 10, []string{"m001", "m002", "m003", "m004"}},
		{0, 2, []string{"m001", "m002"}},
		{2, 10, []string{"m003", "m004"}},
		{4, 10, nil},
		{100, 10, nil},
	}
	for _, tt := range tests {
		got, err := q.Read(tt.after, tt.max)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids(got), tt.want) && !(len(got) == 0 && tt.want == nil) {
			t.Errorf("Read(%d, %d) = %v, want %v", tt.after, tt.max, ids(got), tt.want)
		}
	}
	got, _ := q.Read(0, 1)
	m := got[0]
	if m.Seq != 1 || string(m.Body) != "body 001" || m.EnqueuedAt.IsZero() {
		t.Errorf("message = %+v", m)
	}
	if _, err := q.Read(0, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("Read max 0: %v", err)
	}
	st := q.Stats()
	if st.Depth != 4 || st.Appended != 4 || st.Bytes <= 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestMessageFieldsRoundTrip(t *testing.T) {
	e := newEnv(t, Options{})
	q := e.queue("q", QueueOptions{})
	in := Message{ID: "id-1", Source: "devices/d/modules/m", Props: map[string]string{"a": "1"},
		Sys: map[string]string{"contentType": "application/json"}, Body: []byte{0, 1, 2}, TTL: time.Hour}
	mustAppend(t, q, in)
	got := readAll(t, q)[0]
	if got.ID != in.ID || got.Source != in.Source || got.Props["a"] != "1" ||
		got.Sys["contentType"] != "application/json" || string(got.Body) != string(in.Body) || got.TTL != time.Hour {
		t.Errorf("got %+v, want %+v", got, in)
	}
}

func TestLeaseAck(t *testing.T) {
	e := newEnv(t, Options{})
	q := e.queue("q", QueueOptions{})
	mustAppend(t, q, msgs(1, 10)...)
	a, err := q.Lease(3, 0)
	if err != nil || !slices.Equal(ids(a), []string{"m001", "m002", "m003"}) {
		t.Fatalf("lease 1 = %v, %v", ids(a), err)
	}
	b, _ := q.Lease(3, 0)
	if !slices.Equal(ids(b), []string{"m004", "m005", "m006"}) {
		t.Fatalf("lease 2 = %v", ids(b))
	}
	if err := q.Ack(bg, 7); !errors.Is(err, ErrNotLeased) {
		t.Fatalf("ack beyond lease: %v", err)
	}
	if err := q.Ack(bg, 2); err != nil {
		t.Fatal(err)
	}
	if err := q.Ack(bg, 1); err != nil { // older ack: no-op
		t.Fatal(err)
	}
	if got := ids(readAll(t, q)); got[0] != "m003" || len(got) != 8 {
		t.Fatalf("after ack 2: %v", got)
	}
	q.Rewind()
	c, _ := q.Lease(100, 0)
	if len(c) != 8 || c[0].ID != "m003" {
		t.Fatalf("after rewind: %v", ids(c))
	}
	// Ack after a rewind may still cover what was handed out before it.
	if err := q.Ack(bg, 10); err != nil {
		t.Fatal(err)
	}
	if d, _ := q.Lease(10, 0); len(d) != 0 {
		t.Fatalf("lease of empty queue = %v", ids(d))
	}
	st := q.Stats()
	if st.Depth != 0 || st.Bytes != 0 || st.Acked != 10 || st.OldestAge != 0 {
		t.Errorf("stats = %+v", st)
	}
	if _, err := q.Lease(0, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("Lease(0): %v", err)
	}
}

func TestLeaseMaxBytes(t *testing.T) {
	e := newEnv(t, Options{})
	q := e.queue("q", QueueOptions{})
	big := make([]byte, 1000)
	for i := 0; i < 5; i++ {
		mustAppend(t, q, Message{Body: big})
	}
	a, _ := q.Lease(10, 2500)
	if len(a) != 2 {
		t.Fatalf("lease of 2500 bytes gave %d messages of ~1 KB", len(a))
	}
	b, _ := q.Lease(10, 10) // at least one, even if larger
	if len(b) != 1 || b[0].Seq != 3 {
		t.Fatalf("small byte budget gave %v", b)
	}
}

func TestRestartKeepsEverything(t *testing.T) {
	e := newEnv(t, Options{})
	q := e.queue("a", QueueOptions{})
	e.queue("b", QueueOptions{})
	mustAppend(t, q, msgs(1, 5)...)
	if _, err := q.Lease(2, 0); err != nil {
		t.Fatal(err)
	}
	if err := q.Ack(bg, 2); err != nil {
		t.Fatal(err)
	}
	q.Lease(2, 0) // handed out, not acked: must come back
	before := q.Stats()
	e.restart()
	if got := e.s.Queues(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("queues after restart = %v", got)
	}
	q = e.queue("a", QueueOptions{})
	after := q.Stats()
	before.OldestAge, after.OldestAge = 0, 0
	if before != after {
		t.Errorf("stats before %+v after %+v", before, after)
	}
	l, _ := q.Lease(10, 0)
	if !slices.Equal(ids(l), []string{"m003", "m004", "m005"}) {
		t.Fatalf("lease after restart = %v", ids(l))
	}
	if seqs := mustAppend(t, q, msg(6)); seqs[0] != 6 {
		t.Fatalf("seq after restart = %d, want 6", seqs[0])
	}
	if err := q.Ack(bg, 6); !errors.Is(err, ErrNotLeased) {
		t.Fatalf("ack of unleased after restart: %v", err)
	}
}

func TestStableIDs(t *testing.T) {
	e := newEnv(t, Options{})
	q := e.queue("q", QueueOptions{})
	mustAppend(t, q, Message{ID: "sender-1"}, Message{}, Message{})
	first := readAll(t, q)
	e.restart()
	q = e.queue("q", QueueOptions{})
	mustAppend(t, q, Message{}, Message{})
	all := readAll(t, q)
	if len(all) != 5 || all[0].ID != "sender-1" {
		t.Fatalf("ids = %v", ids(all))
	}
	for i, m := range first {
		if all[i].ID != m.ID {
			t.Errorf("id of %d changed across restart: %q -> %q", m.Seq, m.ID, all[i].ID)
		}
	}
	seen := map[string]bool{}
	for _, m := range all {
		if m.ID == "" || seen[m.ID] {
			t.Errorf("id %q empty or repeated", m.ID)
		}
		seen[m.ID] = true
	}
	if a, b := NewID(), NewID(); a == b || !strings.HasPrefix(b, idPrefix) {
		t.Errorf("NewID: %q %q", a, b)
	}
}

func TestQueueNames(t *testing.T) {
	e := newEnv(t, Options{})
	for _, name := range []string{"", "a\x00b", strings.Repeat("x", 257), "\xff"} {
		if _, err := e.s.Queue(name, QueueOptions{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Queue(%q): %v, want ErrInvalid", name, err)
		}
	}
	if _, err := e.s.Queue("ok", QueueOptions{MaxBytes: -1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("negative cap: %v", err)
	}
	a := e.queue(strings.Repeat("x", 256), QueueOptions{})
	b := e.queue(strings.Repeat("x", 256), QueueOptions{MaxCount: 3})
	if a != b {
		t.Error("second Queue call returned a different queue")
	}
	e.queue("devices/d/modules/m/inputs/in1", QueueOptions{})
	if got := e.s.Queues(); len(got) != 2 {
		t.Errorf("Queues() = %v", got)
	}
	if st := e.s.Stats(); len(st) != 2 {
		t.Errorf("Stats() = %v", st)
	}
}

func TestInvalidMessages(t *testing.T) {
	e := newEnv(t, Options{})
	q := e.queue("q", QueueOptions{})
	bad := []Message{
		{ID: "\xff"},
		{Props: map[string]string{"k": "\xfe"}},
		{TTL: -time.Second},
		{ID: strings.Repeat("i", maxIDLen+1)},
	}
	for _, m := range bad {
		if _, err := q.Append(bg, msg(1), m); !errors.Is(err, ErrInvalid) {
			t.Errorf("Append(%+v): %v", m, err)
		}
	}
	if st := q.Stats(); st.Depth != 0 {
		t.Errorf("invalid batch partly stored: %+v", st)
	}
	huge := make([]Message, e.s.budgetCount+1)
	if _, err := q.Append(bg, huge...); !errors.Is(err, ErrTooLarge) {
		t.Errorf("huge batch: %v", err)
	}
}

// recSize is the record size of capMsg under a fake clock.
func recSize(t *testing.T) int64 {
	e := newEnv(t, Options{Now: newFakeClock().Now, Mono: newFakeClock().Mono})
	q := e.queue("probe", QueueOptions{})
	mustAppend(t, q, capMsg("x00"))
	return q.Stats().Bytes
}

func capMsg(id string) Message { return Message{ID: id, Body: make([]byte, 100)} }

func TestCapsReject(t *testing.T) {
	sz := recSize(t)
	tests := []struct {
		name string
		opts Options
		qo   QueueOptions
		ok   int // appends of one message that fit
		knob string
	}{
		{"queue count", Options{}, QueueOptions{MaxCount: 3}, 3, "QueueOptions.MaxCount"},
		{"queue bytes", Options{}, QueueOptions{MaxBytes: 2*sz + sz/2}, 2, "QueueOptions.MaxBytes"},
		{"total count", Options{TotalMaxCount: 4}, QueueOptions{}, 2, "Options.TotalMaxCount"},
		{"total bytes", Options{TotalMaxBytes: 4*sz + sz/2}, QueueOptions{}, 2, "Options.TotalMaxBytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			tt.opts.Now, tt.opts.Mono = clk.Now, clk.Mono
			e := newEnv(t, tt.opts)
			other := e.queue("other", QueueOptions{})
			total := tt.opts.TotalMaxCount+tt.opts.TotalMaxBytes > 0
			if total {
				mustAppend(t, other, capMsg("o01"), capMsg("o02"))
			}
			q := e.queue("q", tt.qo)
			for i := 0; i < tt.ok; i++ {
				mustAppend(t, q, capMsg(fmt.Sprintf("q%02d", i)))
			}
			_, err := q.Append(bg, capMsg("r01"), capMsg("r02"))
			if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), tt.knob) {
				t.Fatalf("overflow error = %v, want ErrFull naming %s", err, tt.knob)
			}
			st := q.Stats()
			if st.Depth != int64(tt.ok) || st.Rejected != 2 || st.Dropped != 0 {
				t.Fatalf("stats = %+v", st)
			}
			e.restart()
			q = e.queue("q", tt.qo)
			if st := q.Stats(); st.Rejected != 2 {
				t.Fatalf("rejected not persisted: %+v", st)
			}
			// Draining makes room again.
			q.Lease(1, 0)
			if err := q.Ack(bg, 1); err != nil {
				t.Fatal(err)
			}
			mustAppend(t, q, capMsg("q99"))
		})
	}
}

func TestCapsDropOldest(t *testing.T) {
	sz := recSize(t)
	tests := []struct {
		name string
		opts Options
		qo   QueueOptions
		keep int
	}{
		{"queue count", Options{}, QueueOptions{MaxCount: 3}, 3},
		{"queue bytes", Options{}, QueueOptions{MaxBytes: 2*sz + sz/2}, 2},
		{"total count", Options{TotalMaxCount: 5}, QueueOptions{}, 3},
		{"total bytes", Options{TotalMaxBytes: 5*sz + sz/2}, QueueOptions{}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			tt.opts.Now, tt.opts.Mono = clk.Now, clk.Mono
			e := newEnv(t, tt.opts)
			other := e.queue("other", QueueOptions{})
			total := tt.opts.TotalMaxCount+tt.opts.TotalMaxBytes > 0
			if total {
				mustAppend(t, other, capMsg("o01"), capMsg("o02"))
			}
			tt.qo.Overflow = DropOldest
			q := e.queue("q", tt.qo)
			for i := 1; i <= 10; i++ {
				mustAppend(t, q, capMsg(fmt.Sprintf("q%02d", i)))
			}
			got := ids(readAll(t, q))
			var want []string
			for i := 11 - tt.keep; i <= 10; i++ {
				want = append(want, fmt.Sprintf("q%02d", i))
			}
			if !slices.Equal(got, want) {
				t.Fatalf("kept %v, want %v", got, want)
			}
			if st := q.Stats(); st.Dropped != uint64(10-tt.keep) || st.Depth != int64(tt.keep) {
				t.Fatalf("stats = %+v", st)
			}
			if n := len(readAll(t, other)); total && n != 2 {
				t.Fatalf("another queue's messages were dropped: %d left", n)
			}
			// A batch that cannot fit even in an empty queue is rejected.
			big := make([]Message, 6)
			for i := range big {
				big[i] = capMsg(fmt.Sprintf("b%02d", i))
			}
			if _, err := q.Append(bg, big...); !errors.Is(err, ErrFull) {
				t.Fatalf("oversize batch: %v", err)
			}
			e.restart()
			if st := e.queue("q", tt.qo).Stats(); st.Dropped != uint64(10-tt.keep) || st.Rejected != 6 {
				t.Fatalf("counters after restart = %+v", st)
			}
		})
	}
}

func TestDropOldestWhileLeased(t *testing.T) {
	e := newEnv(t, Options{})
	q := e.queue("q", QueueOptions{MaxCount: 2, Overflow: DropOldest})
	mustAppend(t, q, msgs(1, 2)...)
	l, _ := q.Lease(2, 0)
	for _, m := range msgs(3, 3) { // drops m001..m003
		mustAppend(t, q, m)
	}
	if err := q.Ack(bg, l[1].Seq); err != nil {
		t.Fatal(err)
	}
	got, _ := q.Lease(10, 0)
	if !slices.Equal(ids(got), []string{"m004", "m005"}) {
		t.Fatalf("lease after drop = %v", ids(got))
	}
	if st := q.Stats(); st.Depth != 2 || st.Dropped != 3 || st.Acked != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestConcurrentAppends(t *testing.T) {
	e := newEnv(t, Options{})
	q := e.queue("q", QueueOptions{})
	const workers, each = 8, 200
	var wg sync.WaitGroup
	seqs := make([][]uint64, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				s, err := q.Append(bg, msg(w*each+i))
				if err != nil {
					t.Error(err)
					return
				}
				seqs[w] = append(seqs[w], s[0])
			}
		}()
	}
	wg.Wait()
	var all []uint64
	for _, s := range seqs {
		if !slices.IsSorted(s) {
			t.Error("one goroutine's seqs are not increasing")
		}
		all = append(all, s...)
	}
	slices.Sort(all)
	if len(slices.Compact(all)) != workers*each || all[len(all)-1] != workers*each {
		t.Fatalf("seqs not unique and dense: %d", len(all))
	}
	if n := len(readAll(t, q)); n != workers*each {
		t.Fatalf("stored %d", n)
	}
}

func TestAppendAsyncOrder(t *testing.T) {
	e := newEnv(t, Options{})
	q := e.queue("q", QueueOptions{})
	const n = 2000
	var mu sync.Mutex
	var got []uint64
	var wg sync.WaitGroup
	wg.Add(n)
	for i := 0; i < n; i++ {
		q.AppendAsync([]Message{msg(i)}, func(seqs []uint64, err error) {
			defer wg.Done()
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			got = append(got, seqs[0])
			mu.Unlock()
		})
	}
	wg.Wait()
	for i, s := range got {
		if s != uint64(i+1) {
			t.Fatalf("callback %d got seq %d: callbacks out of call order", i, s)
		}
	}
	all := readAll(t, q)
	for i, m := range all {
		if m.ID != msg(i).ID {
			t.Fatalf("seq %d holds %s, want %s", m.Seq, m.ID, msg(i).ID)
		}
	}
}

func TestWait(t *testing.T) {
	e := newEnv(t, Options{})
	q := e.queue("q", QueueOptions{})
	w := q.Wait()
	select {
	case <-w:
		t.Fatal("Wait fired before any append")
	default:
	}
	mustAppend(t, q, msg(1))
	select {
	case <-w:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not fire after a committed append")
	}
	w2 := q.Wait()
	q.Lease(1, 0)
	if err := q.Ack(bg, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w2:
		t.Fatal("Wait fired on an ack")
	default:
	}
}

func TestClosed(t *testing.T) {
	e := newEnv(t, Options{})
	q := e.queue("q", QueueOptions{})
	mustAppend(t, q, msg(1))
	q.Lease(1, 0)
	if err := e.s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Append(bg, msg(2)); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v", err)
	}
	if err := q.Ack(bg, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Ack after Close: %v", err)
	}
	if _, err := e.s.Queue("x", QueueOptions{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Queue after Close: %v", err)
	}
	if err := e.s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// A failed commit fails the ops queued behind it and leaves the state as
// on disk.
func TestCommitFailure(t *testing.T) {
	e := newEnv(t, Options{})
	q := e.queue("q", QueueOptions{MaxCount: 10})
	mustAppend(t, q, msg(1))
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Append(bg, msg(2)); err == nil {
		t.Fatal("append on a closed database succeeded")
	}
	if st := q.Stats(); st.Depth != 1 || st.Appended != 1 {
		t.Fatalf("stats after failed commit = %+v", st)
	}
	e.s.totMu.Lock()
	tot := e.s.totCount
	e.s.totMu.Unlock()
	if tot != 1 {
		t.Fatalf("total count after failure = %d", tot)
	}
	_ = e.s.Close()
	e.s, e.db = nil, nil
}

func TestPurge(t *testing.T) {
	e := newEnv(t, Options{})
	q := e.queue("q", QueueOptions{})
	mustAppend(t, q, msgs(1, 2500)...)
	if _, err := q.Lease(3, 0); err != nil { // a consumer had some handed out
		t.Fatal(err)
	}
	n, err := q.Purge(bg)
	if err != nil || n != 2500 {
		t.Fatalf("purge: %d, %v; want 2500", n, err)
	}
	if st := q.Stats(); st.Depth != 0 {
		t.Fatalf("depth %d after purge", st.Depth)
	}
	mustAppend(t, q, msgs(1, 1)...)
	if got := readAll(t, q); len(got) != 1 {
		t.Fatalf("after purge and append: %d messages", len(got))
	}
}

// Depths is Stats' Depth for every queue, without reading a message.
func TestDepths(t *testing.T) {
	e := newEnv(t, Options{})
	a := e.queue("a", QueueOptions{})
	e.queue("b", QueueOptions{})
	mustAppend(t, a, Message{Body: []byte("1")}, Message{Body: []byte("2")})
	d := e.s.Depths()
	if len(d) != 2 || d["a"] != 2 || d["b"] != 0 || d["a"] != a.Stats().Depth {
		t.Errorf("Depths = %v, want a:2 b:0", d)
	}
}
