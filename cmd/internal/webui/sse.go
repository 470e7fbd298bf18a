package webui

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Event is one Server-Sent Event. Private events go only to streams of
// logged-in clients.
type Event struct {
	Name    string
	Data    []byte // one line of JSON (no newlines)
	Private bool
}

// StreamOptions bound the streams; zero values take the defaults.
type StreamOptions struct {
	MaxStreams   int           // concurrent streams (default 16), at most half of them not private; more get 503
	Buffer       int           // events queued per stream (default 64); a stream that falls behind is closed
	WriteTimeout time.Duration // per write (default 10 s): a stalled reader is cut
	Heartbeat    time.Duration // comment line when idle (default 15 s)
}

func (o StreamOptions) orDefault() StreamOptions {
	if o.MaxStreams <= 0 {
		o.MaxStreams = 16
	}
	if o.Buffer <= 0 {
		o.Buffer = 64
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 15 * time.Second
	}
	return o
}

// ErrTooManyStreams is Serve's answer at the stream cap.
var ErrTooManyStreams = errors.New("too many live streams open; close a dashboard tab and try again")

// Streams fans events out to Server-Sent Event clients: a buffer per
// client, a cap on clients, a write deadline on every write and
// heartbeats. A client whose buffer is full is dropped (its EventSource
// reconnects and starts from a fresh snapshot) rather than slowing the
// others or growing memory.
type Streams struct {
	opts    StreamOptions
	mu      sync.Mutex
	clients map[*client]struct{}
	dropped atomic.Int64 // clients closed because they fell behind
	refused atomic.Int64 // streams refused at the cap
}

type client struct {
	ch      chan Event
	private bool
	behind  chan struct{} // closed when dropped for falling behind
}

// NewStreams returns an empty fan-out.
func NewStreams(opts StreamOptions) *Streams {
	return &Streams{opts: opts.orDefault(), clients: map[*client]struct{}{}}
}

// Len is the number of open streams.
func (s *Streams) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.clients)
}

// Counts is the number of open streams and of those that see private
// events.
func (s *Streams) Counts() (open, private int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.clients {
		if c.private {
			private++
		}
	}
	return len(s.clients), private
}

// Dropped counts the streams closed because their client fell behind;
// Refused those refused at the cap.
func (s *Streams) Dropped() int64 { return s.dropped.Load() }
func (s *Streams) Refused() int64 { return s.refused.Load() }

// Publish queues ev for every stream that may see it, without blocking.
func (s *Streams) Publish(ev Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.clients {
		if ev.Private && !c.private {
			continue
		}
		select {
		case c.ch <- ev:
		default:
			delete(s.clients, c)
			close(c.behind)
			s.dropped.Add(1)
		}
	}
}

func (s *Streams) add(private bool) (*client, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.clients) >= s.opts.MaxStreams || (!private && s.public() >= (s.opts.MaxStreams+1)/2) {
		s.refused.Add(1)
		return nil, false
	}
	c := &client{ch: make(chan Event, s.opts.Buffer), private: private, behind: make(chan struct{})}
	s.clients[c] = struct{}{}
	return c, true
}

// public counts the open streams without the private flag (s.mu held).
func (s *Streams) public() int {
	n := 0
	for c := range s.clients {
		if !c.private {
			n++
		}
	}
	return n
}

func (s *Streams) remove(c *client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.clients, c)
}

// Serve streams events to one client until it goes away, falls behind or
// a write fails: first (computed after the client is registered, so
// nothing published meanwhile is lost), then what Publish sends. At the
// cap it answers 503 and returns ErrTooManyStreams.
func (s *Streams) Serve(w http.ResponseWriter, r *http.Request, private bool, first func() []Event) error {
	c, ok := s.add(private)
	if !ok {
		http.Error(w, ErrTooManyStreams.Error(), http.StatusServiceUnavailable)
		return ErrTooManyStreams
	}
	defer s.remove(c)
	sw := NewSSEWriter(w, s.opts.WriteTimeout)
	for _, ev := range first() {
		if err := sw.Send(ev); err != nil {
			return err
		}
	}
	beat := time.NewTicker(s.opts.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case ev := <-c.ch:
			if err := sw.Send(ev); err != nil {
				return err
			}
		case <-beat.C:
			if err := sw.Heartbeat(); err != nil {
				return err
			}
		case <-c.behind:
			return errors.New("the client fell behind: stream closed")
		case <-r.Context().Done():
			return nil
		}
	}
}

// SSEWriter writes Server-Sent Events, each under a write deadline.
type SSEWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

// NewSSEWriter sets the event-stream headers and returns the writer.
func NewSSEWriter(w http.ResponseWriter, timeout time.Duration) *SSEWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	return &SSEWriter{w: w, rc: http.NewResponseController(w), timeout: timeout}
}

// Send writes one event and flushes it.
func (s *SSEWriter) Send(ev Event) error {
	return s.write(fmt.Appendf(nil, "event: %s\ndata: %s\n\n", ev.Name, ev.Data))
}

// Heartbeat writes a comment line, so proxies and the client see the
// stream alive, and a dead client is found by the write deadline.
func (s *SSEWriter) Heartbeat() error { return s.write([]byte(": heartbeat\n\n")) }

func (s *SSEWriter) write(b []byte) error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	return s.rc.Flush()
}
