package webui

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// serveStreams serves s on a real port; private says whether a request is
// a logged-in one (header X-Private in the test).
func serveStreams(t *testing.T, s *Streams) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = s.Serve(w, r, r.Header.Get("X-Private") == "1", func() []Event {
			return []Event{{Name: "hello", Data: []byte(`{}`)}}
		})
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// openStream opens a stream and returns a reader positioned after its
// first event.
func openStream(t *testing.T, url string, private bool) (*http.Response, *bufio.Reader) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if private {
		req.Header.Set("X-Private", "1")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 {
		return resp, nil
	}
	br := bufio.NewReader(resp.Body)
	if ev := readEvent(t, br); ev != "hello" {
		t.Fatalf("first event %q, want hello", ev)
	}
	return resp, br
}

// readEvent returns the name of the next event ("" for a heartbeat).
func readEvent(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	name := ""
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			return name
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		}
	}
}

func waitLen(t *testing.T, s *Streams, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); s.Len() != n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams open, want %d", s.Len(), n)
		}
	}
}

func TestStreamsCapPrivateAndHeartbeat(t *testing.T) {
	s := NewStreams(StreamOptions{MaxStreams: 2, Heartbeat: 50 * time.Millisecond})
	url := serveStreams(t, s)
	_, pub := openStream(t, url, false)
	_, priv := openStream(t, url, true)
	waitLen(t, s, 2)
	if open, private := s.Counts(); open != 2 || private != 1 {
		t.Errorf("Counts = %d open, %d private; want 2, 1", open, private)
	}
	if resp, _ := openStream(t, url, false); resp.StatusCode != http.StatusServiceUnavailable || s.Refused() != 1 {
		t.Errorf("a third stream over a cap of 2: %d (refused %d), want 503", resp.StatusCode, s.Refused())
	}
	s.Publish(Event{Name: "secret", Data: []byte(`1`), Private: true})
	s.Publish(Event{Name: "status", Data: []byte(`2`)})
	if ev := readEvent(t, priv); ev != "secret" {
		t.Errorf("logged-in stream got %q first, want secret", ev)
	}
	if ev := readEvent(t, pub); ev != "status" {
		t.Errorf("anonymous stream got %q, want status (never the private event)", ev)
	}
	// Idle: heartbeats keep coming.
	if ev := readEvent(t, pub); ev != "" {
		t.Errorf("idle stream got %q, want a heartbeat", ev)
	}
}

// Anonymous streams take at most half the cap: a local user holding
// them all does not lock the operator's dashboard out.
func TestStreamsKeepHalfForPrivate(t *testing.T) {
	s := NewStreams(StreamOptions{MaxStreams: 4, Heartbeat: time.Hour})
	url := serveStreams(t, s)
	openStream(t, url, false)
	openStream(t, url, false)
	waitLen(t, s, 2)
	if resp, _ := openStream(t, url, false); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a third anonymous stream of 4: %d, want 503", resp.StatusCode)
	}
	for range 2 {
		if resp, _ := openStream(t, url, true); resp.StatusCode != http.StatusOK {
			t.Errorf("a private stream with anonymous ones at their half: %d, want 200", resp.StatusCode)
		}
	}
	if resp, _ := openStream(t, url, true); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a fifth stream of 4: %d, want 503", resp.StatusCode)
	}
}

// A client that does not read falls behind: its buffer fills and it is
// dropped, without holding up Publish or the other streams.
func TestStreamsDropSlowClient(t *testing.T) {
	s := NewStreams(StreamOptions{Buffer: 4, WriteTimeout: 200 * time.Millisecond, Heartbeat: time.Hour})
	url := serveStreams(t, s)
	_, fast := openStream(t, url, false)
	addr := strings.TrimPrefix(url, "http://")
	slow, err := net.Dial("tcp", addr) // sends the request, never reads
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := slow.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	waitLen(t, s, 2)
	big := []byte(`"` + strings.Repeat("x", 64<<10) + `"`)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			s.Publish(Event{Name: "status", Data: big})
			if i%4 == 3 {
				for j := 0; j < 4; j++ {
					readEvent(t, fast) // the fast client keeps up
				}
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Publish blocked behind a client that does not read")
	}
	if s.Dropped() == 0 {
		t.Errorf("no stream dropped after 200 × 64 KiB to a client that never reads")
	}
	waitLen(t, s, 1)
}

// The write deadline ends a stream whose reader stalled.
func TestSSEWriterDeadline(t *testing.T) {
	errc := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := NewSSEWriter(w, 100*time.Millisecond)
		big := []byte(strings.Repeat("x", 1<<20))
		for {
			if err := sw.Send(Event{Name: "x", Data: big}); err != nil {
				errc <- err
				return
			}
		}
	}))
	defer srv.Close()
	c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	select {
	case err := <-errc:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("stalled reader: %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a stream to a reader that never reads was not cut")
	}
}

// Only the embedded scripts, styles and the favicon are served, each with
// its type; the pages carry a policy that allows no other origin.
func TestAssets(t *testing.T) {
	for _, c := range []struct {
		path, ctype string
		status      int
	}{
		{"/assets/edge.js", "text/javascript; charset=utf-8", 200},
		{"/assets/common.js", "text/javascript; charset=utf-8", 200},
		{"/assets/style.css", "text/css; charset=utf-8", 200},
		{"/assets/favicon.svg", "image/svg+xml", 200},
		{"/assets/edge.html", "", 404},
		{"/assets/nosuch.js", "", 404},
		{"/assets/..%2fassets.go", "", 404},
	} {
		rec := httptest.NewRecorder()
		Asset(rec, httptest.NewRequest("GET", c.path, nil))
		if rec.Code != c.status || (c.ctype != "" && rec.Header().Get("Content-Type") != c.ctype) {
			t.Errorf("%s: %d %q, want %d %q", c.path, rec.Code, rec.Header().Get("Content-Type"), c.status, c.ctype)
		}
	}
	rec := httptest.NewRecorder()
	EdgePage(rec, httptest.NewRequest("GET", "/", nil))
	if csp := rec.Header().Get("Content-Security-Policy"); rec.Code != 200 || !strings.Contains(csp, "default-src 'none'") ||
		!strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(rec.Body.String(), `rel="icon"`) {
		t.Errorf("GET /: %d, CSP %q", rec.Code, csp)
	}
}
