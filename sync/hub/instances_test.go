package hub

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/sync/protocol"
)

// fakeNow is a clock the test moves.
type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeNow) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeNow) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// pullAs sends a pull of one instance of gw1 and returns the hub's
// InstancesHeader.
func (f *fixture) pullAs(t *testing.T, instance string, wait time.Duration) string {
	h, _ := f.pullScope(t, instance, wait, "")
	return h
}

// pullScope pulls with the scope digest of an earlier push (so that the
// pull waits) and returns the header and the push's scope.
func (f *fixture) pullScope(t *testing.T, instance string, wait time.Duration, scope string) (string, string) {
	return f.pullCtx(context.Background(), t, instance, wait, scope)
}

func (f *fixture) pullCtx(ctx context.Context, t *testing.T, instance string, wait time.Duration, scope string) (string, string) {
	t.Helper()
	body, enc, err := protocol.Encode(protocol.Pull{Instance: instance, WaitMs: wait.Milliseconds(), Scope: scope})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", f.srv.URL+protocol.PathPull, bytes.NewReader(body))
	req.Header.Set("Authorization", f.edgeToken())
	req.Header.Set("Content-Type", protocol.ContentType)
	if enc != "" {
		req.Header.Set("Content-Encoding", enc)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			t.Error(err)
		}
		return "", ""
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("pull as %s: %s", instance, resp.Status)
		return "", ""
	}
	var push protocol.Push
	if err := protocol.Decode(resp.Body, resp.Header.Get("Content-Encoding"), &push); err != nil {
		t.Error(err)
	}
	return resp.Header.Get(protocol.InstancesHeader), push.Scope
}

func (f *fixture) duplicates(t *testing.T) string {
	t.Helper()
	_, data := f.do(t, "GET", "/metrics", ownerToken(), nil, nil)
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "outpost_hub_duplicate_instances_total ") {
			return strings.TrimPrefix(l, "outpost_hub_duplicate_instances_total ")
		}
	}
	t.Fatal("no outpost_hub_duplicate_instances_total in /metrics")
	return ""
}

// Two live instances of one edge identity are found, named to each other
// in InstancesHeader, counted and shown by EdgeInstances; an edge whose
// data directory was wiped (a new instance after the old one stopped) is
// not a duplicate, and a duplicate ends once the other instance is gone.
func TestDuplicateInstances(t *testing.T) {
	clock := &fakeNow{t: time.Now()} // tokens are checked on it too
	f := newFixtureWith(t, Options{PullWait: 200 * time.Millisecond, Now: clock.Now})
	a, b := "edge:gw1.aaaa", "edge:gw1.bbbb"

	if h := f.pullAs(t, a, 0); h != "" {
		t.Fatalf("one instance: header %q", h)
	}
	clock.Add(10 * time.Second)
	// b starts after a's last request: a wiped data directory, or a
	// second gateway whose twin has not asked again yet.
	if h := f.pullAs(t, b, 0); h != "" {
		t.Fatalf("b after a's last request: header %q, want none (a restart with a fresh data directory looks like this)", h)
	}
	if n := f.duplicates(t); n != "0" {
		t.Fatalf("duplicates counted %s before a was seen again", n)
	}
	clock.Add(10 * time.Second)
	if h := f.pullAs(t, a, 0); h != b {
		t.Fatalf("a again while b is live: header %q, want %q", h, b)
	}
	if h := f.pullAs(t, b, 0); h != a {
		t.Fatalf("b: header %q, want %q", h, a)
	}
	if n := f.duplicates(t); n != "1" {
		t.Errorf("outpost_hub_duplicate_instances_total %s, want 1", n)
	}
	if list, dup := f.h.EdgeInstances("gw1"); !dup || len(list) != 2 {
		t.Errorf("EdgeInstances: %+v duplicate %v, want both, duplicate", list, dup)
	}
	if es := f.h.Edges(); len(es) != 1 || !es[0].DuplicateInstance {
		t.Errorf("fleet view %+v, want gw1 marked duplicateInstance", es)
	}
	// The other instance stops; past the window only b is live.
	clock.Add(DefaultDuplicateWindow + time.Second)
	if h := f.pullAs(t, b, 0); h != "" {
		t.Errorf("b alone: header %q", h)
	}
	if _, dup := f.h.EdgeInstances("gw1"); dup {
		t.Error("still a duplicate after a left")
	}
	if es := f.h.Edges(); len(es) != 1 || es[0].DuplicateInstance {
		t.Errorf("fleet view %+v after a left, want no duplicate", es)
	}
}

// A pull waiting at the hub is answered at once when a second instance
// appears, so the first edge learns of it without waiting out its pull.
func TestDuplicateWakesWaitingPull(t *testing.T) {
	f := newFixtureWith(t, Options{PullWait: 10 * time.Second})
	a, b := "edge:gw1.aaaa", "edge:gw1.bbbb"
	_, scope := f.pullScope(t, a, 0, "") // the scope, at once
	got := make(chan string, 1)
	go func() { h, _ := f.pullScope(t, a, 10*time.Second, scope); got <- h }()
	deadline := time.Now().Add(5 * time.Second)
	for list, _ := f.h.EdgeInstances("gw1"); len(list) != 1 || !list[0].Pulling; list, _ = f.h.EdgeInstances("gw1") {
		if time.Now().After(deadline) {
			t.Fatalf("a's pull is not waiting: %+v", list)
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	if h := f.pullAs(t, b, 0); h != a {
		t.Errorf("b: header %q, want %q", h, a)
	}
	select {
	case h := <-got:
		if h != b {
			t.Errorf("a's waiting pull answered with header %q, want %q", h, b)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("a's pull answered %s after b appeared", d)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("a's waiting pull was not answered when b appeared")
	}
}

// An edge that stops (its waiting pull is cancelled: the connection
// closed) is gone at once: the duplicate ends without waiting out the
// window, so the edge that stays, or a restart of the one that left, is
// not reported.
func TestDuplicateEndsWhenAnEdgeLeaves(t *testing.T) {
	f := newFixtureWith(t, Options{PullWait: 10 * time.Second})
	a, b := "edge:gw1.aaaa", "edge:gw1.bbbb"
	_, scope := f.pullScope(t, a, 0, "")
	_, scopeB := f.pullScope(t, b, 0, "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.pullCtx(ctx, t, a, 10*time.Second, scope) }()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if list, dup := f.h.EdgeInstances("gw1"); len(list) == 2 && list[0].Pulling && dup {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a's pull is not waiting, or no duplicate (a pulls after b was first seen, b is live)")
		}
	}
	cancel() // a stops
	<-done
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if list, dup := f.h.EdgeInstances("gw1"); !dup && len(list) == 1 && list[0].Instance == b {
			break
		}
		if time.Now().After(deadline) {
			list, dup := f.h.EdgeInstances("gw1")
			t.Fatalf("after a left: %+v duplicate %v, want b alone", list, dup)
		}
	}
	if h, _ := f.pullScope(t, b, 0, scopeB+"x"); h != "" {
		t.Errorf("b after a left: header %q", h)
	}
}

// Two edges that share one instance id (a data directory copied on the
// same machine id) end each other's pulls: pulls that begin while another
// of the instance waits are counted, and three within the window are a
// duplicate, named with the instance itself.
func TestSharedInstance(t *testing.T) {
	f := newFixtureWith(t, Options{PullWait: 10 * time.Second})
	a := "edge:gw1.aaaa"
	_, scope := f.pullScope(t, a, 0, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	headers := make(chan string, 8)
	for i := 0; i < 4; i++ {
		go func() { h, _ := f.pullCtx(ctx, t, a, 10*time.Second, scope); headers <- h }()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if list, _ := f.h.EdgeInstances("gw1"); len(list) == 1 && list[0].Pulling && (i == 0 || len(headers) == i) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pull %d is not waiting", i)
			}
		}
	}
	list, dup := f.h.EdgeInstances("gw1")
	if !dup || len(list) != 1 || !list[0].Shared {
		t.Fatalf("after 3 clashing pulls: %+v duplicate %v, want %s shared", list, dup, a)
	}
	if h := <-headers; h != "" {
		t.Errorf("the first pull ended by a clash carried %q; one clash is no duplicate", h)
	}
	<-headers
	if h := <-headers; h != a {
		t.Errorf("the pull ended by the third clash: header %q, want %q", h, a)
	}
	if n := f.duplicates(t); n != "1" {
		t.Errorf("outpost_hub_duplicate_instances_total %s, want 1", n)
	}
}

// An edge that makes up instance ids cannot grow the hub's memory: it
// keeps at most maxInstances of one edge, live ones included.
func TestInstancesBounded(t *testing.T) {
	f := newFixture(t)
	for i := range 10 * maxInstances {
		inst := "edge:gw1.madeup" + strconv.Itoa(i)
		if _, err := f.h.Messages(f.ctx, "gw1", protocol.Messages{Instance: inst, Queue: "q"}); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	f.h.instances.mu.Lock()
	n := len(f.h.instances.m["gw1"].seen)
	f.h.instances.mu.Unlock()
	if n > maxInstances {
		t.Errorf("the hub remembers %d instances of gw1, want at most %d", n, maxInstances)
	}
}
