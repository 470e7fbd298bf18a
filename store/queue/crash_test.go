package queue

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/kv"
)

const (
	crashDirEnv  = "OUTPOST_QUEUE_CRASH_DIR"
	crashDurEnv  = "OUTPOST_QUEUE_CRASH_DURABILITY"
	crashSeedEnv = "OUTPOST_QUEUE_CRASH_SEED"
)

// TestCrashChild is the process TestCrash kills: it appends and acks in a
// loop and prints a line after each Append or Ack returns:
//
//	A <seq> <id or -> <body>   a message is durable
//	L <upTo>                   an ack is about to be sent
//	K <upTo>                   the ack is durable
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process for TestCrash")
	}
	dur, err := kv.ParseDurability(os.Getenv(crashDurEnv))
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
	db, err := kv.Open(dir, kv.Options{Durability: dur})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), db, Options{})
	if err != nil {
		t.Fatal(err)
	}
	q, err := s.Queue("crash", QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := func(format string, a ...any) {
		if _, err := os.Stdout.WriteString(fmt.Sprintf(format, a...)); err != nil {
			t.Fatal(err)
		}
	}
	out("READY\n")
	r := rand.New(rand.NewPCG(seed, 7))
	for n := 0; ; {
		switch x := r.IntN(10); {
		case x < 8:
			k := 1
			if x >= 4 {
				k = 2 + r.IntN(20)
			}
			batch := make([]Message, k)
			for i := range batch {
				n++
				batch[i].Body = []byte(fmt.Sprintf("b%d-%d", seed, n))
				if r.IntN(2) == 0 {
					batch[i].ID = fmt.Sprintf("c%d-%d", seed, n)
				}
			}
			seqs, err := q.Append(context.Background(), batch...)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for i, seq := range seqs {
				id := batch[i].ID
				if id == "" {
					id = "-"
				}
				fmt.Fprintf(&b, "A %d %s %s\n", seq, id, batch[i].Body)
			}
			out("%s", b.String())
		default:
			ms, err := q.Lease(1+r.IntN(40), 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) == 0 {
				continue
			}
			upTo := ms[r.IntN(len(ms))].Seq
			out("L %d\n", upTo)
			if err := q.Ack(context.Background(), upTo); err != nil {
				t.Fatal(err)
			}
			out("K %d\n", upTo)
		}
	}
}

type crashMsg struct {
	seq      uint64
	id, body string
}

// crashState is what the parent knows the store must hold.
type crashState struct {
	want   []crashMsg        // acknowledged appends not acked, in order
	maxSeq uint64            // highest seq seen, printed or stored
	acked  uint64            // highest acknowledged ack
	intent uint64            // highest ack attempted
	ids    map[string]uint64 // id -> seq
}

// TestCrash kills a child process (kill -9) at random points while it
// appends and acks, then checks every acknowledged append is stored in
// order with its id and body unless acked, and nothing acked comes back.
func TestCrash(t *testing.T) {
	dir := t.TempDir()
	st := &crashState{ids: map[string]uint64{}}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	rounds := []string{"process", "process", "process", "process", "process",
		"process", "process", "process", "process", "process", "power", "process"}
	for i, dur := range rounds {
		delay := time.Duration(20+r.IntN(281)) * time.Millisecond
		lines := runCrashChild(t, dir, dur, uint64(i+1), delay)
		appended := st.apply(t, i, lines)
		st.verify(t, i, dir, appended)
		t.Logf("round %d (%s, killed after %v): %d lines, %d stored, acked up to %d",
			i, dur, delay, len(lines), len(st.want), st.acked)
	}
}

func runCrashChild(t *testing.T, dir, dur string, seed uint64, delay time.Duration) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashDurEnv+"="+dur,
		crashSeedEnv+"="+strconv.FormatUint(seed, 10))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	if !sc.Scan() || sc.Text() != "READY" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child did not start: %q %v\n%s", sc.Text(), sc.Err(), stderr.String())
	}
	killed := make(chan struct{})
	timer := time.AfterFunc(delay, func() {
		close(killed) // before the signal: the reader may see EOF at once
		_ = cmd.Process.Signal(syscall.SIGKILL)
	})
	defer timer.Stop()
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	err = cmd.Wait()
	select {
	case <-killed:
	default:
		t.Fatalf("child exited by itself (%v):\n%s", err, stderr.String())
	}
	return lines
}

// apply folds the child's output into the expectations and returns the
// seqs it printed.
func (st *crashState) apply(t *testing.T, round int, lines []string) []uint64 {
	t.Helper()
	var printed []uint64
	for _, l := range lines {
		f := strings.Fields(l)
		switch {
		case len(f) == 4 && f[0] == "A":
			seq, _ := strconv.ParseUint(f[1], 10, 64)
			if seq <= st.maxSeq {
				t.Fatalf("round %d: seq %d not above %d (seen before)", round, seq, st.maxSeq)
			}
			st.maxSeq = seq
			printed = append(printed, seq)
			st.want = append(st.want, crashMsg{seq, f[2], f[3]})
		case len(f) == 2 && f[0] == "L":
			n, _ := strconv.ParseUint(f[1], 10, 64)
			st.intent = max(st.intent, n)
		case len(f) == 2 && f[0] == "K":
			n, _ := strconv.ParseUint(f[1], 10, 64)
			st.acked = max(st.acked, n)
		default:
			t.Fatalf("round %d: bad line %q", round, l)
		}
	}
	return printed
}

// verify reopens the store and checks it against the expectations, which
// then become what is stored.
func (st *crashState) verify(t *testing.T, round int, dir string, printed []uint64) {
	t.Helper()
	db, err := kv.Open(dir, kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := Open(context.Background(), db, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	q, err := s.Queue("crash", QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, q)
	if stats := q.Stats(); stats.Depth != int64(len(got)) {
		t.Fatalf("round %d: meta depth %d, stored %d", round, stats.Depth, len(got))
	}
	lastPrinted := uint64(0)
	if len(printed) > 0 {
		lastPrinted = printed[len(printed)-1]
	}
	byseq := map[uint64]Message{}
	var prev uint64
	for _, m := range got {
		if m.Seq <= prev {
			t.Fatalf("round %d: seqs out of order: %d after %d", round, m.Seq, prev)
		}
		prev = m.Seq
		if m.Seq <= st.acked {
			t.Fatalf("round %d: seq %d came back after ack up to %d", round, m.Seq, st.acked)
		}
		byseq[m.Seq] = m
	}
	want := map[uint64]bool{}
	for _, w := range st.want {
		want[w.seq] = true
		m, ok := byseq[w.seq]
		switch {
		case !ok && w.seq > st.intent:
			t.Fatalf("round %d: acknowledged append %d (%s) lost", round, w.seq, w.body)
		case !ok:
			continue // an ack in flight may have removed it
		case string(m.Body) != w.body || (w.id != "-" && m.ID != w.id):
			t.Fatalf("round %d: seq %d holds %q/%q, want %q/%q", round, w.seq, m.ID, m.Body, w.id, w.body)
		}
	}
	st.want = st.want[:0]
	for _, m := range got {
		if !want[m.Seq] && m.Seq <= lastPrinted {
			t.Fatalf("round %d: unexpected message %d (%s) before the last printed append", round, m.Seq, m.Body)
		}
		if m.ID == "" {
			t.Fatalf("round %d: seq %d has no id", round, m.Seq)
		}
		st.want = append(st.want, crashMsg{m.Seq, m.ID, string(m.Body)})
		st.maxSeq = max(st.maxSeq, m.Seq)
	}
	for _, m := range st.want {
		if seq, ok := st.ids[m.id]; ok && seq != m.seq {
			t.Fatalf("round %d: id %q used by seqs %d and %d", round, m.id, seq, m.seq)
		}
		st.ids[m.id] = m.seq
	}
}
