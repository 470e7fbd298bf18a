package scenario

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// eventWatch is a background reader of the hub's event log (eventwatch).
type eventWatch struct {
	stop chan struct{}
	done chan struct{}

	mu     sync.Mutex
	seen   map[uint64]string // seq → message id, as read
	next   uint64            // the seq the reader asks for next
	gaps   []string          // what was wrong, as read
	errors int               // reads that failed (leader lost, …)
}

var eventWatches sync.Map // linkKey → *eventWatch

// eventwatch start NAME: read the hub's event log through $HUB in the
// background, as a consumer does (long polls from the seq after the last
// one read, retried when a read fails), and keep what it read.
// eventwatch stop NAME: let it read up to the end of the log, stop it, and
// fail if a read skipped a seq or went back, or if an event read then is not in the log now (read through $HUB)
// with the same seq: what a reader once saw never changes. Prints
// "read N events, M failed reads, 0 gaps, 0 changed".
func cmdEventWatch(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: eventwatch start|stop NAME")
	}
	key := linkKey(ts, args[1])
	switch args[0] {
	case "start":
		w := &eventWatch{stop: make(chan struct{}), done: make(chan struct{}), seen: map[uint64]string{}, next: 1}
		if _, dup := eventWatches.LoadOrStore(key, w); dup {
			ts.Fatalf("eventwatch %s is already started", args[1])
		}
		base, token := ts.Getenv("HUB"), ownerToken(ts)
		go w.run(base, token)
		ts.Defer(func() { w.halt(); eventWatches.Delete(key) })
	case "stop":
		v, ok := eventWatches.LoadAndDelete(key)
		if !ok {
			ts.Fatalf("no eventwatch %s", args[1])
		}
		w := v.(*eventWatch)
		w.catchUp(ts)
		w.halt()
		w.check(ts)
	default:
		ts.Fatalf("usage: eventwatch start|stop NAME")
	}
}

func (w *eventWatch) run(base, token string) {
	defer close(w.done)
	client := &http.Client{Timeout: 10 * time.Second}
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		w.mu.Lock()
		from := w.next
		w.mu.Unlock()
		evs, err := readEventPage(client, base, token, from)
		w.mu.Lock()
		w.add(evs, err)
		w.mu.Unlock()
		if err != nil {
			select {
			case <-w.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// add records a page read (w.mu held).
func (w *eventWatch) add(evs []hubEvent, err error) {
	if err != nil {
		w.errors++
		return
	}
	for _, e := range evs {
		if e.Seq != w.next {
			w.gaps = append(w.gaps, fmt.Sprintf("asked for seq %d, read seq %d", w.next, e.Seq))
		}
		w.seen[e.Seq] = e.MessageID
		w.next = max(w.next, e.Seq+1)
	}
}

// catchUp waits until the reader has read as far as the log (at $HUB)
// goes now.
func (w *eventWatch) catchUp(ts *testscript.TestScript) {
	code, data := hubGet(ts, "/healthz")
	var h struct{ Events uint64 }
	if code != 200 || json.Unmarshal(data, &h) != nil {
		ts.Fatalf("eventwatch: the hub's /healthz: %d %s", code, data)
	}
	poll(ts, fmt.Sprintf("the event reader at seq %d", h.Events), func() string {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.next > h.Events {
			return ""
		}
		return fmt.Sprintf("read up to seq %d", w.next-1)
	})
}

// readEventPage is one long poll of GET /messages/events from seq from.
func readEventPage(client *http.Client, base, token string, from uint64) ([]hubEvent, error) {
	req, err := http.NewRequest("GET", fmt.Sprintf("%s/messages/events?from=%d&limit=1000&wait=2", base, from), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", token)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		return nil, fmt.Errorf("%d %s %v", resp.StatusCode, data, err)
	}
	var evs []hubEvent
	return evs, json.Unmarshal(data, &evs)
}

func (w *eventWatch) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// check compares what the watcher read with the log as it is now.
func (w *eventWatch) check(ts *testscript.TestScript) {
	w.mu.Lock()
	defer w.mu.Unlock()
	changed := 0
	hubEvents(ts, 1, func(e hubEvent) {
		if mid, ok := w.seen[e.Seq]; ok && mid != e.MessageID {
			if changed++; changed <= 5 {
				fmt.Fprintf(ts.Stderr(), "seq %d was %s when read, is %s now\n", e.Seq, mid, e.MessageID)
			}
		}
	})
	for i, g := range w.gaps {
		if i < 5 {
			fmt.Fprintln(ts.Stderr(), g)
		}
	}
	fmt.Fprintf(ts.Stdout(), "read %d events, %d failed reads, %d gaps, %d changed\n", len(w.seen), w.errors, len(w.gaps), changed)
	if len(w.gaps) > 0 || changed > 0 || len(w.seen) == 0 {
		ts.Fatalf("eventwatch: what readers saw was not a gap-free, stable log")
	}
}
