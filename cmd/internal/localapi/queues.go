package localapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/outpost-edge/outpost/store/queue"
)

// A queue listing is streamed in batches and cut at a count and a byte
// limit, so one request never holds more than a batch in memory.
const (
	defaultQueueLimit = 100
	maxQueueLimit     = 1000
	queueBatch        = 32
	// MaxQueueResponse caps the JSON bytes of one queue listing (one
	// message more than the cap is written only when it is the first).
	MaxQueueResponse = 4 << 20
)

// QueuePage is the shape of GET /queues/{name}: Next, when set, is the
// `after` that continues the listing.
type QueuePage struct {
	Messages []QueueMessage `json:"messages"`
	Next     *uint64        `json:"next"`
}

// QueueMessage is a queued message as the API shows it, named as IoT Hub
// names a message's parts (camelCase, times as RFC 3339, durations in
// seconds). It is a view of queue.Message, whose fields are its storage
// form (CBOR elsewhere) and must not become the wire's.
type QueueMessage struct {
	MessageID        string            `json:"messageId"`
	Source           string            `json:"source"`
	Properties       map[string]string `json:"properties"`
	SystemProperties map[string]string `json:"systemProperties"`
	Body             []byte            `json:"body"` // base64
	// TTLSeconds is how long the message may wait in the queue in all
	// (0: the queue's default, which may be never).
	TTLSeconds   float64   `json:"ttlSeconds"`
	Seq          uint64    `json:"seq"`
	EnqueuedTime time.Time `json:"enqueuedTime"`
}

// queueMessage is m as the API shows it.
func queueMessage(m queue.Message) QueueMessage {
	v := QueueMessage{MessageID: m.ID, Source: m.Source, Properties: m.Props, SystemProperties: m.Sys, Body: m.Body,
		TTLSeconds: m.TTL.Seconds(), Seq: m.Seq, EnqueuedTime: m.EnqueuedAt.UTC()}
	if v.Properties == nil {
		v.Properties = map[string]string{}
	}
	if v.SystemProperties == nil {
		v.SystemProperties = map[string]string{}
	}
	return v
}

func (s *Server) maxResponse() int {
	if s.opts.MaxResponseBytes > 0 {
		return s.opts.MaxResponseBytes
	}
	return MaxQueueResponse
}

// queue lists queued messages without consuming them:
// GET /queues/{name}?after=SEQ&limit=N →
// {"messages":[…],"next":SEQ|null}.
func (s *Server) queue(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	after, limit, err := pageParams(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	asked := min(queueBatch, limit+1)
	msgs, ok, err := s.opts.ReadQueue(name, after, asked)
	switch {
	case !ok:
		writeError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("no queue %q; GET /status lists them", name))
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, "Internal", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"messages":[`))
	next := s.streamQueue(w, name, msgs, asked, limit)
	tail := []byte(`],"next":null}` + "\n")
	if next != nil {
		tail = fmt.Appendf(nil, `],"next":%d}`+"\n", *next)
	}
	_, _ = w.Write(tail)
}

// streamQueue writes msgs and the batches after them until limit, the
// byte cap or the end of the queue; it returns where to continue, or nil
// at the end of the queue. Each batch reads one message more than it may
// write, to tell a full page from the end.
func (s *Server) streamQueue(w http.ResponseWriter, name string, msgs []queue.Message, asked, limit int) *uint64 {
	var last uint64
	count, written := 0, 0
	for {
		for _, m := range msgs {
			data, err := json.Marshal(queueMessage(m))
			if err != nil || count == limit || (count > 0 && written+len(data) > s.maxResponse()) {
				return &last
			}
			if count > 0 {
				_, _ = w.Write([]byte(","))
			}
			if _, err := w.Write(data); err != nil {
				return nil // the client is gone
			}
			count, written, last = count+1, written+len(data)+1, m.Seq
		}
		if len(msgs) < asked {
			return nil
		}
		asked = min(queueBatch, limit-count+1)
		var err error
		if msgs, _, err = s.opts.ReadQueue(name, last, asked); err != nil {
			s.opts.Logger.Warn("local API: queue listing cut short", "queue", name, "err", err)
			return &last
		}
	}
}

func pageParams(r *http.Request) (after uint64, limit int, err error) {
	q := r.URL.Query()
	if a := q.Get("after"); a != "" {
		if after, err = strconv.ParseUint(a, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("after must be a sequence number (the `next` of the previous page)")
		}
	}
	limit = defaultQueueLimit
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit <= 0 || limit > maxQueueLimit {
			return 0, 0, fmt.Errorf("limit must be a number from 1 to %d", maxQueueLimit)
		}
	}
	return after, limit, nil
}
