package localapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/store/queue"
)

// A queue of 40 messages of 200 KiB (8 MiB, 11 MiB as JSON) is listed in
// pages under the byte cap, each telling where to continue.
func TestQueueListingBounded(t *testing.T) {
	f := newFixture(t, nil)
	q, err := f.queues.Queue("$upstream/p0", queue.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	body := []byte(strings.Repeat("b", 200<<10))
	for i := range n {
		if _, err := q.Append(context.Background(), queue.Message{ID: fmt.Sprint(i), Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	var after uint64
	seen, pages := 0, 0
	for {
		resp, data := f.do(req{path: fmt.Sprintf("/queues/$upstream/p0?after=%d&limit=1000", after), token: f.token})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("page %d: %d %s", pages, resp.StatusCode, data)
		}
		if len(data) > MaxQueueResponse+64 {
			t.Fatalf("page %d: %d bytes, over the %d cap", pages, len(data), MaxQueueResponse)
		}
		var page QueuePage
		if err := json.Unmarshal(data, &page); err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		pages++
		for _, m := range page.Messages {
			if m.MessageID != fmt.Sprint(seen) {
				t.Fatalf("message %q, want %d", m.MessageID, seen)
			}
			seen++
		}
		if page.Next == nil {
			break
		}
		if len(page.Messages) == 0 || *page.Next != page.Messages[len(page.Messages)-1].Seq {
			t.Fatalf("page %d: next %d does not follow its last message", pages, *page.Next)
		}
		after = *page.Next
	}
	if seen != n || pages < 3 {
		t.Errorf("%d messages in %d pages, want %d in at least 3", seen, pages, n)
	}
}

func TestQueueListingLimit(t *testing.T) {
	f := newFixture(t, nil)
	q, err := f.queues.Queue("$upstream/p0", queue.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 70 {
		if _, err := q.Append(context.Background(), queue.Message{ID: fmt.Sprint(i), Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		query string
		count int
		next  bool
	}{{"limit=10", 10, true}, {"limit=70", 70, false}, {"limit=69", 69, true}, {"", 70, false}, {"after=65&limit=5", 5, false}, {"after=64&limit=5", 5, true}} {
		_, data := f.do(req{path: "/queues/$upstream/p0?" + c.query, token: f.token})
		var page QueuePage
		if err := json.Unmarshal(data, &page); err != nil || len(page.Messages) != c.count || (page.Next != nil) != c.next {
			t.Errorf("?%s: %d messages, next %v (%v), want %d, more %t", c.query, len(page.Messages), page.Next, err, c.count, c.next)
		}
	}
	for _, bad := range []string{"limit=1001", "limit=0", "limit=x", "after=-1"} {
		if resp, _ := f.do(req{path: "/queues/$upstream/p0?" + bad, token: f.token}); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("?%s: %d, want 400", bad, resp.StatusCode)
		}
	}
	if resp, _ := f.do(req{path: "/queues/nosuch/p0", token: f.token}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown queue: %d, want 404", resp.StatusCode)
	}
	if _, ok := f.queues.Lookup("nosuch/p0"); ok {
		t.Error("listing an unknown queue created it")
	}
}
