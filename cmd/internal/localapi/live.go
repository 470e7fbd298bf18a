package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/webui"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/supervisor"
)

// The dashboard's live view: a sampler reads Status every LiveInterval,
// keeps the last historySamples samples and link changes, and publishes
// them to the open event streams (GET /events/stream).
const (
	defaultLiveInterval = time.Second
	historySamples      = 600 // 10 minutes at 1 s
	historyLinks        = 50
	// MaxDashboardTwins bounds the twins the dashboard's twins event lists.
	MaxDashboardTwins = 100
)

// TwinFields is one twin's registers for the dashboard.
type TwinFields struct {
	ID     string           `json:"id"`
	Fields []twin.FieldInfo `json:"fields"`
}

// Sample is one point of the dashboard's plots.
type Sample struct {
	T        int64  `json:"t"`    // unix ms
	Link     string `json:"link"` // online, offline, connecting or standalone
	Depth    int64  `json:"depth"`
	Upstream int64  `json:"upstream"` // messages waiting in $upstream queues
	Received int64  `json:"received"` // broker counter: telemetry accepted
	Sent     int64  `json:"sent"`     // link counter: messages the hub stored
}

// LinkChange is one entry of the link's history.
type LinkChange struct {
	State string    `json:"state"`
	Since time.Time `json:"since"`
	Error string    `json:"error,omitempty"`
}

type live struct {
	streams *webui.Streams
	stop    chan struct{}
	once    sync.Once
	done    chan struct{}

	mu        sync.Mutex
	samples   []Sample // ring, oldest first once full
	links     []LinkChange
	lastTwins []byte
}

func newLive(opts webui.StreamOptions) *live {
	return &live{streams: webui.NewStreams(opts), stop: make(chan struct{}), done: make(chan struct{})}
}

// run samples until stop.
func (s *Server) runLive() {
	defer close(s.live.done)
	every := s.opts.LiveInterval
	if every <= 0 {
		every = defaultLiveInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.sample()
		select {
		case <-t.C:
		case <-s.live.stop:
			return
		}
	}
}

func (s *Server) sample() {
	l := s.live
	open, operators := l.streams.Counts()
	st := s.sampled(open)
	sm := sampleOf(st, s.opts.Now())
	l.mu.Lock()
	l.samples = keepLast(l.samples, sm, historySamples)
	if c, ok := linkChange(st); ok && (len(l.links) == 0 || !l.links[len(l.links)-1].Since.Equal(c.Since) || l.links[len(l.links)-1].State != c.State) {
		l.links = keepLast(l.links, c, historyLinks)
	}
	l.mu.Unlock()
	if open == 0 {
		return // no viewer: only the history is kept
	}
	st.Queues = HideIdleLanes(st.Queues) // what GET /status shows (sm counted them all)
	if data, err := json.Marshal(map[string]any{"status": st, "sample": sm, "links": s.linkHistory()}); err == nil {
		l.streams.Publish(webui.Event{Name: "status", Data: data})
	}
	if s.opts.TwinFields != nil && operators > 0 {
		if data, ok := s.twinsChanged(); ok {
			l.streams.Publish(webui.Event{Name: "twins", Data: data, Private: true})
		}
	}
}

// keepLast appends v to s, dropping the oldest element when s holds n
// already: in place, so the history allocates nothing once full.
func keepLast[T any](s []T, v T, n int) []T {
	if len(s) < n {
		return append(s, v)
	}
	copy(s, s[1:])
	s[len(s)-1] = v
	return s
}

// sampled is what the sampler reads: the full Status when streams are
// open, else the counters a sample needs.
func (s *Server) sampled(open int) Status {
	if open == 0 && s.opts.LiveStatus != nil {
		return s.opts.LiveStatus()
	}
	return s.opts.Status()
}

func sampleOf(st Status, now time.Time) Sample {
	sm := Sample{T: now.UnixMilli(), Link: "standalone", Received: st.Broker.Received}
	if st.Uplink != nil {
		sm.Link, sm.Sent = st.Uplink.State, st.Uplink.Sent
	}
	for _, q := range st.Queues {
		sm.Depth += q.Depth
		if strings.HasPrefix(q.Name, "$upstream/") {
			sm.Upstream += q.Depth
		}
	}
	return sm
}

func linkChange(st Status) (LinkChange, bool) {
	if st.Uplink == nil {
		return LinkChange{}, false
	}
	return LinkChange{State: st.Uplink.State, Since: st.Uplink.Since, Error: st.Uplink.LastError}, true
}

func (s *Server) linkHistory() []LinkChange {
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	return append([]LinkChange{}, s.live.links...)
}

// twinsChanged returns the twins event when it differs from the last one.
func (s *Server) twinsChanged() ([]byte, bool) {
	data, err := s.twinsJSON()
	if err != nil {
		s.opts.Logger.Debug("dashboard: reading twins", "err", err)
		return nil, false
	}
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	if bytes.Equal(data, s.live.lastTwins) {
		return nil, false
	}
	s.live.lastTwins = data
	return data, true
}

func (s *Server) twinsJSON() ([]byte, error) {
	ts, err := s.opts.TwinFields(MaxDashboardTwins)
	if err != nil {
		return nil, err
	}
	if ts == nil {
		ts = []TwinFields{}
	}
	return json.Marshal(ts)
}

// stream serves GET /events/stream: Server-Sent Events "history" (at
// once), then "status" every LiveInterval and, for the operator, "twins"
// when they change. Without the operator's credential a stream carries
// only what GET /status shows.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	operator := s.authenticated(r)
	err := s.live.streams.Serve(w, r, operator, func() []webui.Event {
		s.live.mu.Lock()
		hist, _ := json.Marshal(map[string]any{"samples": append([]Sample{}, s.live.samples...),
			"links": append([]LinkChange{}, s.live.links...), "operator": operator})
		s.live.mu.Unlock()
		evs := []webui.Event{{Name: "history", Data: hist}}
		if operator && s.opts.TwinFields != nil {
			if data, err := s.twinsJSON(); err == nil {
				evs = append(evs, webui.Event{Name: "twins", Data: data, Private: true})
			}
		}
		return evs
	})
	if err != nil && !errors.Is(err, webui.ErrTooManyStreams) {
		s.opts.Logger.Debug("dashboard stream ended", "err", err)
	}
}

// dashboardTwins serves GET /dashboard/twins: every twin's registers with
// their origin, time and pending state (operator only).
func (s *Server) dashboardTwins(w http.ResponseWriter, _ *http.Request) {
	if s.opts.TwinFields == nil {
		writeError(w, http.StatusNotFound, "NotFound", "this edge does not list twins")
		return
	}
	data, err := s.twinsJSON()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "Internal", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(data)
}

// session serves GET /session: whether the caller holds the operator's
// credential (the page shows the operator's panels then).
func (s *Server) session(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]bool{"operator": s.authenticated(r)})
}

// ModuleRestart is what POST /modules/{m}/restart answers.
type ModuleRestart struct {
	Module    string `json:"module"`
	Restarted bool   `json:"restarted"`
}

// restart serves POST /modules/{m}/restart (as `iotedge restart`).
func (s *Server) restart(w http.ResponseWriter, r *http.Request) {
	m := r.PathValue("m")
	if s.opts.Restart == nil {
		writeError(w, http.StatusNotFound, "NotFound", "this edge runs no modules")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), handlerDeadline)
	defer cancel()
	switch err := s.opts.Restart(ctx, m); {
	case errors.Is(err, supervisor.ErrNoModule):
		writeError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("no module %q in the deployment; `outpost edge status` lists them", m))
	case err != nil:
		writeError(w, http.StatusConflict, "Conflict", err.Error())
	default:
		writeJSON(w, http.StatusOK, ModuleRestart{Module: m, Restarted: true})
	}
}
