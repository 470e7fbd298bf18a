package upstream

import (
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/queue"
)

// progressEnv drains a backlog of n messages with the given progress
// interval and returns the link's log once the backlog is gone.
func progressEnv(t *testing.T, n int, every time.Duration) string {
	logs := &syncBuffer{}
	e := newEnvWith(t, func(e *env) {
		q, err := e.queues.Queue("$upstream/pdefault", queue.QueueOptions{})
		if err != nil {
			t.Fatal(err)
		}
		batch := make([]queue.Message, n)
		for i := range batch {
			batch[i] = queue.Message{ID: fmt.Sprintf("m%d", i), Source: "devices/dev1", Body: []byte("x")}
		}
		if _, err := q.Append(e.ctx, batch...); err != nil {
			t.Fatal(err)
		}
		e.link.opts.ProgressEvery = every
		e.link.opts.BatchMessages = 500
		e.link.log = slog.New(slog.NewTextHandler(logs, nil))
	})
	eventually(t, "the drain", func() bool { return e.hub.LastSeq() >= uint64(n) })
	if every < time.Second {
		eventually(t, "the drained line", func() bool { return strings.Contains(logs.String(), "link drained the backlog") })
	}
	return logs.String()
}

// A long drain says how it goes (sent, left, rate) and when it is done.
func TestDrainLogsProgress(t *testing.T) {
	logs := progressEnv(t, 5000, time.Nanosecond)
	lefts := regexp.MustCompile(`link draining the backlog" sent=(\d+) left=(\d+)`).FindAllStringSubmatch(logs, -1)
	if len(lefts) < 5 {
		t.Fatalf("%d progress lines, want one per batch:\n%s", len(lefts), logs)
	}
	if lefts[0][2] == "0" || lefts[len(lefts)-1][2] != "0" {
		t.Errorf("left should fall to 0: first %s, last %s", lefts[0][0], lefts[len(lefts)-1][0])
	}
	if !regexp.MustCompile(`link drained the backlog" sent=5000 `).MatchString(logs) {
		t.Errorf("no drained line for 5000 messages:\n%s", logs)
	}
}

// A drain shorter than the interval logs nothing.
func TestShortDrainIsQuiet(t *testing.T) {
	if logs := progressEnv(t, 2000, time.Hour); strings.Contains(logs, "backlog") {
		t.Errorf("a short drain logged its progress:\n%s", logs)
	}
}
