package upstream

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// A hub that answers 429 with Retry-After (the edge has too many link
// requests in flight) is waited out: the frame goes again after the wait,
// and the link does not count as failed.
func TestBusyHubWaitedOut(t *testing.T) {
	e := newEnv(t)
	eventually(t, "the link online", func() bool { return e.link.Status().State == "online" })
	real := e.handler.Load().(handlerBox).Handler
	var mu sync.Mutex
	var busyAt, retriedAt time.Time
	e.serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == protocol.PathMessages {
			mu.Lock()
			first := busyAt.IsZero()
			if first {
				busyAt = time.Now()
			} else if retriedAt.IsZero() {
				retriedAt = time.Now()
			}
			mu.Unlock()
			if first {
				w.Header().Set("Retry-After", "1")
				http.Error(w, `{"code":"TooManyRequests","message":"busy"}`, http.StatusTooManyRequests)
				return
			}
		}
		real.ServeHTTP(w, r)
	}))
	q, err := e.queues.Queue("$upstream/pdefault", queue.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Append(e.ctx, queue.Message{ID: "m1", Source: "devices/dev1", Body: []byte("busy")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the drain", func() bool { return q.Stats().Depth == 0 })
	mu.Lock()
	defer mu.Unlock()
	if wait := retriedAt.Sub(busyAt); wait < 900*time.Millisecond {
		t.Fatalf("retried %s after the 429, want after Retry-After (1 s)", wait)
	}
	if st := e.link.Status(); st.State != "online" || st.LastError != "" {
		t.Fatalf("link %s, last error %q: a busy hub counted as a failure", st.State, st.LastError)
	}
}
