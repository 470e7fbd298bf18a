package upstream

import (
	"bytes"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/identity"
)

// syncBuffer is a log sink the link's goroutines write to concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// announcements records the states the link announced, in order.
type announcements struct {
	mu     sync.Mutex
	states []string
}

func (a *announcements) add(state string, _ *HubError) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.states = append(a.states, state)
}

func (a *announcements) Load() int64 { return int64(len(a.list())) }

func (a *announcements) list() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.states)
}

// refusedEnv runs a link whose key the hub does not know, with the
// refused backoff given, counting the requests the hub sees and the
// refusals the link announces.
func refusedEnv(t *testing.T, lo, hi time.Duration) (e *env, requests *atomic.Int64, announced *announcements, logs *syncBuffer) {
	requests, announced, logs = &atomic.Int64{}, &announcements{}, &syncBuffer{}
	e = newEnvWith(t, func(e *env) {
		real := e.handler.Load().(handlerBox).Handler
		e.serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			real.ServeHTTP(w, r)
		}))
		wrong := e.edgeCS
		wrong.SharedAccessKey = []byte("not-the-key-the-hub-holds-for-gw1")
		var err error
		e.link, err = New(Options{URL: e.srv.URL, Edge: wrong, DB: e.db, Queues: e.queues, Twins: e.twins, Identities: e.ids,
			Target: e.rec, PullWait: time.Second, RefusedMin: lo, RefusedMax: hi,
			Logger:  slog.New(slog.NewTextHandler(logs, nil)),
			Refused: announced.add})
		if err != nil {
			t.Fatal(err)
		}
	})
	return e, requests, announced, logs
}

// An edge whose key is wrong says so (state unauthorized, one ERROR line
// naming 401 and what to check, one announcement) and asks again slowly:
// with the default backoff (30 s to 5 min) the hub sees no request in the
// seconds after the first refusals, where the old link retried five times
// a second.
func TestWrongKeyIsAnErrorAndRetriesSlowly(t *testing.T) {
	e, requests, announced, logs := refusedEnv(t, 30*time.Second, 5*time.Minute)
	eventually(t, "state unauthorized", func() bool { return e.link.Status().State == "unauthorized" })
	// Every loop gets its refusal, then only the pull loop asks again, in 15–30 s.
	eventually(t, "three refusals", func() bool { return requests.Load() >= 3 })
	before := requests.Load()
	time.Sleep(3 * time.Second) // the window over which requests are counted, not a wait for a condition
	if n := requests.Load(); n != before || n > 3 {
		t.Errorf("the hub saw %d requests, %d of them in the 3 s after the refusals; want 3, none after", n, n-before)
	}
	st := e.link.Status()
	if st.State != "unauthorized" || !strings.Contains(st.LastError, "401") {
		t.Errorf("status %q, last error %q; want unauthorized with the 401", st.State, st.LastError)
	}
	out := logs.String()
	const line = "hub refused this edge's credentials (401 unauthorized): check the edge's connection string/key"
	if c := strings.Count(out, line); c != 1 || !strings.Contains(out, "level=ERROR msg=\""+line) {
		t.Errorf("the ERROR line appears %d times, want once:\n%s", c, out)
	}
	if strings.Contains(out, "retrying") {
		t.Errorf("a refusal logged as an ordinary retry:\n%s", out)
	}
	if n := announced.Load(); n != 1 {
		t.Errorf("Refused called %d times, want once", n)
	}
}

// Once the hub accepts the key (here: the device is given the edge's key),
// the next attempt gets through and the link is online; a device that is
// disabled is forbidden (403), named as such.
func TestRefusalEndsWhenTheHubAccepts(t *testing.T) {
	e, _, announced, logs := refusedEnv(t, 100*time.Millisecond, 200*time.Millisecond)
	eventually(t, "state unauthorized", func() bool { return e.link.Status().State == "unauthorized" })
	put := func(status string) {
		t.Helper()
		key := []byte("not-the-key-the-hub-holds-for-gw1")
		_, err := e.hub.PutDevice(e.ctx, identity.JSON{DeviceID: "gw1", Status: status, Capabilities: &identity.Capabilities{IoTEdge: true},
			Authentication: &identity.Authentication{Type: identity.AuthSAS, SymmetricKey: &identity.SymmetricKey{PrimaryKey: key, SecondaryKey: key}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	put("enabled")
	eventually(t, "online with the key the hub now holds", func() bool { return e.link.Status().State == "online" })
	put("disabled")
	eventually(t, "state forbidden", func() bool { return e.link.Status().State == "forbidden" })
	if st := e.link.Status(); !strings.Contains(st.LastError, "403") {
		t.Errorf("last error %q, want the 403", st.LastError)
	}
	if out := logs.String(); !strings.Contains(out, "hub refused this edge (403 forbidden)") {
		t.Errorf("no ERROR line for the 403:\n%s", out)
	}
	// A request that passed the hub's check just before the device was
	// disabled may still end after a refusal (online again, then forbidden
	// again): the state was entered anew and is announced again.
	states := announced.list()
	if len(states) < 2 || states[0] != "unauthorized" || states[len(states)-1] != "forbidden" || slices.Contains(states[1:], "unauthorized") {
		t.Errorf("Refused announced %v, want unauthorized, then forbidden", states)
	}
}
