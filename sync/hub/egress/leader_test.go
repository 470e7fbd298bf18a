package egress

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/sync/hub"
)

// leaderLog is a real hub whose leadership the test decides, as a
// cluster's raft node would.
type leaderLog struct {
	*hub.Hub
	leads atomic.Bool
}

func (l *leaderLog) Leads() bool { return l.leads.Load() }

// seqHook is a plain-HTTP webhook on loopback recording the seqs it takes.
type seqHook struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seqs []uint64
}

func newSeqHook(t *testing.T) *seqHook {
	h := &seqHook{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var evs []struct{ Seq uint64 }
		body, _ := io.ReadAll(r.Body)
		if json.Unmarshal(body, &evs) != nil {
			http.Error(w, "bad", 400)
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, e := range evs {
			h.seqs = append(h.seqs, e.Seq)
		}
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *seqHook) got() []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.seqs)
}

func (h *seqHook) routes() string {
	return fmt.Sprintf("[[endpoint]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"%s/in\"\n[[route]]\nname = \"r\"\nquery = \"FROM /messages/* INTO hook\"\n", h.srv.URL)
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// TestOnlyLeaderDelivers: a node that does not lead delivers nothing and
// follows the committed cursor; once it leads it delivers from that
// cursor (the previous leader's last commit), and when it stops leading
// it stops delivering.
func TestOnlyLeaderDelivers(t *testing.T) {
	hook := newSeqHook(t)
	th := openTestHub(t, "dev1", "dev2")
	log := &leaderLog{Hub: th.h}
	r, _ := runRouterOn(t, th, log, hook.routes(), DialOptions{})
	th.appendEvents(40, func(int) int { return 0 })
	// The previous leader delivered and committed up to 15.
	if err := th.h.SetRouteCursors(t.Context(), map[string]uint64{"hook": 15}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the follower's cursor at the committed one", func() bool { return r.cursorOf("hook") == 15 })
	time.Sleep(300 * time.Millisecond)
	if got := hook.got(); len(got) != 0 {
		t.Fatalf("a node that does not lead delivered %v", got)
	}
	log.leads.Store(true)
	waitFor(t, 10*time.Second, "delivery as the leader", func() bool { return r.cursorOf("hook") == 40 })
	if got := hook.got(); !slices.Equal(got, seqRange(16, 40)) {
		t.Fatalf("the new leader delivered %v, want 16..40", got)
	}
	waitFor(t, 10*time.Second, "the cursor committed", func() bool {
		c, err := th.h.RouteCursors()
		return err == nil && c["hook"] == 40
	})
	log.leads.Store(false)
	time.Sleep(1500 * time.Millisecond) // the lane's poll notices
	th.appendEvents(10, func(int) int { return 0 })
	time.Sleep(500 * time.Millisecond)
	if got := hook.got(); len(got) != 25 {
		t.Fatalf("a deposed leader went on delivering: %v", got[25:])
	}
}

// TestExpiredEventsSkipped: events that leave the log (retention) before
// the endpoint had them are skipped, never waited for, and counted in
// outpost_hub_route_skipped_total; delivery goes on after them.
func TestExpiredEventsSkipped(t *testing.T) {
	hook := newSeqHook(t)
	th := openTestHubWith(t, 2*time.Second, "dev1")
	log := &leaderLog{Hub: th.h}
	r, _ := runRouterOn(t, th, log, hook.routes(), DialOptions{})
	th.appendEvents(30, func(int) int { return 0 })
	waitFor(t, 20*time.Second, "the events to expire", func() bool {
		evs, err := th.h.Events(1, 1)
		return err == nil && len(evs) == 0
	})
	th.appendEvents(5, func(int) int { return 0 })
	log.leads.Store(true)
	waitFor(t, 10*time.Second, "delivery past the expired events", func() bool { return r.cursorOf("hook") == 35 })
	if got := hook.got(); !slices.Equal(got, seqRange(31, 35)) {
		t.Fatalf("delivered %v, want 31..35", got)
	}
	if m := th.metrics(); !strings.Contains(m, `outpost_hub_route_skipped_total{endpoint="hook"} 30`) {
		t.Fatalf("/metrics does not count 30 skipped events:\n%s", m)
	}
}

// TestWebhookRedirectNotFollowed: a webhook that redirects has not taken
// the events, and the configured headers (credentials) never reach the
// redirect's target; the failure is logged without them.
func TestWebhookRedirectNotFollowed(t *testing.T) {
	var elsewhere atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere.Add(1) }))
	defer target.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/steal", http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	th := openTestHub(t, "dev1")
	var logs syncBuf
	cfg, routes, err := ParseConfig("routes.toml", []byte(fmt.Sprintf(
		"[[endpoint]]\nname = \"hook\"\ntype = \"webhook\"\nurl = %q\nheaders = { Authorization = \"Bearer s3cret\" }\n[[route]]\nname = \"r\"\nquery = \"FROM /* INTO hook\"\n", redirect.URL)))
	if err != nil {
		t.Fatal(err)
	}
	ep, err := Dial(cfg.Endpoints[0], DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Options{Log: th.h, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Endpoints: map[string]Endpoint{"hook": ep}, Routes: routes})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done; _ = r.Close() }()
	th.appendEvents(3, func(int) int { return 0 })
	waitFor(t, 10*time.Second, "a failed delivery logged", func() bool { return strings.Contains(logs.String(), "307") })
	if r.cursorOf("hook") != 0 || elsewhere.Load() != 0 {
		t.Fatalf("cursor %d, %d requests at the redirect's target", r.cursorOf("hook"), elsewhere.Load())
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Fatalf("the log holds the endpoint's header: %s", logs.String())
	}
}

type syncBuf struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
