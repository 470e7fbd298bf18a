package hub

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/sync/protocol"
)

// stalledRequest opens a raw connection to the fixture's server and sends
// a request header announcing a body it never sends.
func (f *fixture) stalledRequest(t *testing.T, method, path, auth string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(f.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: hub.test\r\nAuthorization: %s\r\nContent-Type: %s\r\nContent-Length: 1000\r\n\r\n{",
		method, path, auth, protocol.ContentType)
	return c
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// An edge with MaxLinkRequests requests in flight gets 429 with Retry-After
// for one more, and is served again once one ends.
func TestLinkFramesPerEdgeLimited(t *testing.T) {
	f := newFixtureWith(t, Options{MaxLinkRequests: 2})
	first := f.stalledRequest(t, "POST", protocol.PathMessages, f.edgeToken())
	f.stalledRequest(t, "POST", protocol.PathMessages, f.edgeToken())
	inFlight := func() int {
		f.h.linkSlots.mu.Lock()
		defer f.h.linkSlots.mu.Unlock()
		return f.h.linkSlots.n["gw1"]
	}
	waitUntil(t, "two frames in flight", func() bool { return inFlight() == 2 })
	body, _, _ := protocol.Encode(protocol.Hello{Version: protocol.Version, Instance: "edge:gw1.a"})
	req, _ := http.NewRequest("POST", f.srv.URL+protocol.PathHello, strings.NewReader(string(body)))
	req.Header.Set("Authorization", f.edgeToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("third frame: %d Retry-After %q; want 429, 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if n := f.h.metrics.linkBusy.Load(); n != 1 {
		t.Fatalf("busy refusals counted %d, want 1", n)
	}
	first.Close()
	waitUntil(t, "a slot freed", func() bool { return inFlight() == 1 })
	if code, body := f.frame(t, protocol.PathHello, protocol.Hello{Version: protocol.Version, Instance: "edge:gw1.a"}, nil); code != 200 {
		t.Fatalf("after a slot freed: %d %s", code, body)
	}
}

// A REST request whose body stalls is cut at the request deadline (read
// and write deadline alike: the connection closes).
func TestRequestDeadlineCutsStalledBody(t *testing.T) {
	f := newFixtureWith(t, Options{RequestDeadline: 300 * time.Millisecond})
	c := f.stalledRequest(t, "PUT", "/devices/slow", ownerToken())
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(3 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if took := time.Since(start); err != nil || took > 2*time.Second {
		t.Fatalf("connection of a stalled body still open after %s (%v); want closed at the 300ms deadline", took, err)
	}
}

// The long poll of /messages/events is not cut by the request deadline:
// it waits for its own wait= and answers.
func TestLongPollOutlivesRequestDeadline(t *testing.T) {
	f := newFixtureWith(t, Options{RequestDeadline: 200 * time.Millisecond})
	go func() {
		time.Sleep(700 * time.Millisecond)
		f.frame(t, protocol.PathMessages, protocol.Messages{Instance: "edge:gw1.a", Queue: "q",
			Msgs: []protocol.Message{{Seq: 1, ID: "x", Source: "devices/dev1", Body: []byte("late")}}}, nil)
	}()
	start := time.Now()
	code, body := f.do(t, "GET", "/messages/events?from=1&wait=5", ownerToken(), nil, nil)
	if code != 200 || !strings.Contains(string(body), `"messageId":"x"`) || time.Since(start) < 500*time.Millisecond {
		t.Fatalf("long poll: %d %s after %s", code, body, time.Since(start))
	}
	// The same keep-alive connection serves the next request: the long
	// poll left no deadline behind.
	if code, _ := f.do(t, "GET", "/devices", ownerToken(), nil, nil); code != 200 {
		t.Fatalf("next request: %d", code)
	}
}

// A request refused for authentication closes its connection after the
// answer: without credentials no keep-alive connection can be held.
func TestUnauthenticatedConnectionClosed(t *testing.T) {
	f := newFixture(t)
	for _, path := range []string{"GET /devices", "POST " + protocol.PathPull, "GET " + protocol.PathImages + "/sha256:00"} {
		c, err := net.Dial("tcp", strings.TrimPrefix(f.srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "%s HTTP/1.1\r\nHost: hub.test\r\nContent-Length: 0\r\n\r\n", path)
		r := bufio.NewReader(c)
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 401 {
			t.Fatalf("%s: %d, want 401", path, resp.StatusCode)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
			t.Fatalf("%s: after the 401 the connection is still open (%v)", path, err)
		}
	}
}
