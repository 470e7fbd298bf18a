package demo

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
	"github.com/outpost-edge/outpost/cmd/internal/localapi"
)

// Snapshot is what the demo shows at one moment.
type Snapshot struct {
	Elapsed   time.Duration
	LinkCut   bool             // the demo's proxy cuts the link
	Status    *localapi.Status // the edge's; nil when it could not be read
	StatusErr string
	// InRate and OutRate are messages per second into the edge's broker
	// and up the link, since the previous snapshot.
	InRate, OutRate float64
	Figures         Figures
	Twins           []TwinState
}

// observer turns successive edge statuses into rates.
type observer struct {
	last   *localapi.Status
	lastAt time.Time
}

// snapshot reads the edge's status and the twins on both sides.
func (s *session) snapshot(ctx context.Context) Snapshot {
	obs := &s.obs
	now := time.Now()
	snap := Snapshot{Elapsed: now.Sub(s.start), LinkCut: s.proxy.Down(), Figures: s.tally.Figures(s.restoredAt())}
	st, err := s.edgec.Status()
	if err != nil {
		snap.StatusErr = err.Error()
	} else {
		snap.Status = &st
		if obs.last != nil {
			dt := now.Sub(obs.lastAt).Seconds()
			snap.InRate = float64(st.Broker.Received-obs.last.Broker.Received) / dt
			if st.Uplink != nil && obs.last.Uplink != nil {
				snap.OutRate = float64(st.Uplink.Sent-obs.last.Uplink.Sent) / dt
			}
		}
		obs.last, obs.lastAt = &st, now
	}
	snap.Twins = s.twins(ctx)
	return snap
}

// twins compares each device's twin at the hub and at the edge.
func (s *session) twins(ctx context.Context) []TwinState {
	out := make([]TwinState, 0, len(s.devices))
	for _, d := range s.devices {
		var hubDoc json.RawMessage
		if err := s.hubc.Do(ctx, http.MethodGet, hubclient.PathOf("twins", d.id), nil, &hubDoc); err != nil {
			out = append(out, TwinState{Device: d.id, Err: "hub: " + err.Error()})
			continue
		}
		edgeDoc, err := s.edgeTwin(ctx, d.id)
		if err != nil {
			out = append(out, TwinState{Device: d.id, Err: "edge: " + err.Error()})
			continue
		}
		out = append(out, compareTwins(d.id, hubDoc, edgeDoc))
	}
	return out
}

func (s *session) edgeTwin(ctx context.Context, device string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := s.edgec.Do(ctx, http.MethodGet, hubclient.PathOf("twins", device), "", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

func (s *session) restoredAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restored
}

// cut cuts the link at the proxy; restore brings it back.
func (s *session) cut() { s.proxy.Cut() }

func (s *session) restore() {
	s.mu.Lock()
	if s.proxy.Down() {
		s.restored = time.Now()
	}
	s.mu.Unlock()
	s.proxy.Restore()
}

// converged counts the devices whose twins converged.
func converged(twins []TwinState) int {
	n := 0
	for _, t := range twins {
		if t.Converged() {
			n++
		}
	}
	return n
}
