package edge

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/certs"
	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/sync/protocol"
	"github.com/outpost-edge/outpost/sync/upstream"
)

// newLink prepares the uplink to the hub, unless the edge is standalone.
func (e *edge) newLink() error {
	if e.hubURL == "" {
		return nil
	}
	var roots *x509.CertPool
	if e.cfg.HubCA != "" {
		var err error
		if roots, err = certs.LoadCAs(e.cfg.HubCA, "--hub-ca"); err != nil {
			return err
		}
	}
	var forwards func(crdt.ReplicaID) bool // the twin writes of child edges go up too (nested edges)
	var children func() []protocol.ChildStatus
	if e.downstream != nil {
		forwards, children = e.downstream.Forwards, e.downstream.Report
	}
	l, err := upstream.New(upstream.Options{URLs: e.hubURLs, Edge: e.cs, DB: e.db, Queues: e.queues, Twins: e.twins,
		Identities: e.ids, Target: linkTarget{e}, Logger: e.cfg.Logger, RootCAs: roots, Now: e.clock.Now, HubTime: e.clock.Confirm,
		MaxImageSize: e.cfg.MaxImageSize, Refused: e.refusedOnce(), Members: e.twinMembers, Forwards: forwards, Children: children,
		Presence: e.presence.report, PresenceChanged: e.presence.changed})
	e.link = l
	return err
}

// presenceClients lists the broker's clients and those connected below
// the child edges, for the hub's connection state.
func (e *edge) presenceClients() []presenceClient {
	var out []presenceClient
	if e.broker != nil {
		for _, c := range e.broker.Clients() {
			out = append(out, presenceClient{ID: c.ClientID, Since: c.Since.UnixMilli(), Count: c.Received + c.Delivered})
		}
	}
	if e.downstream != nil {
		for _, c := range e.downstream.ChildClients() {
			out = append(out, presenceClient{ID: c.ID, Since: c.Since, Activity: c.Activity})
		}
	}
	return out
}

// refusedOnce tells people on stderr, once, that the hub refused the
// edge's credentials: the edge still says "edge ready" (it serves local
// clients), so a wrong key must not hide in the log.
func (e *edge) refusedOnce() func(string, *upstream.HubError) {
	var said atomic.Bool
	return func(state string, he *upstream.HubError) {
		if e.cfg.Stderr == nil || said.Swap(true) {
			return
		}
		what := "check the edge's connection string/key"
		if he.Status == http.StatusForbidden {
			what = "check that " + e.cs.DeviceID + " exists at the hub as an enabled edge device (outpost device show " + e.cs.DeviceID + ")"
		}
		fmt.Fprintf(e.cfg.Stderr, "warning: the hub at %s refused this edge's credentials (%d %s): %s; the edge serves local clients and asks again every few minutes (outpost edge check --data %s)\n",
			e.hubURL, he.Status, state, what, e.cfg.DataDir)
	}
}

// edgeHubDesired returns the $edgeHub twin's desired properties when the
// hub has delivered a deployment with routes.
func (e *edge) edgeHubDesired() ([]byte, bool) {
	if e.hubURL == "" {
		return nil, false
	}
	v, err := e.twins.Get(e.cs.DeviceID + "/$edgeHub")
	if err != nil || v.Desired["routes"] == nil {
		return nil, false
	}
	data, err := json.Marshal(v.Desired)
	return data, err == nil
}

// twinReload applies a new $edgeHub desired: a deployment whose routes do
// not parse is rejected and the routes in force stay. The outcome goes to
// $edgeHub's reported lastDesiredStatus, which the hub sees.
func (e *edge) twinReload(version int64) {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	status := map[string]any{"code": 200, "description": ""}
	c, err := e.routes()
	if err != nil {
		e.cfg.Logger.Error("deployment from the hub rejected; the previous routes, policy and MQTT accounts stay in force", "err", err)
		status = map[string]any{"code": 400, "description": err.Error()}
	} else {
		e.applyRoutes(c)
		e.cfg.Logger.Info("deployment from the hub applied", "routes", len(c.routes.Routes), "desired_version", version)
	}
	patch, _ := json.Marshal(map[string]any{"lastDesiredVersion": version, "lastDesiredStatus": status})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	session, err := e.twins.BeginSession()
	if err == nil {
		_, err = e.twins.PatchReported(ctx, e.cs.DeviceID+"/$edgeHub", session, patch)
	}
	if err != nil {
		e.cfg.Logger.Warn("$edgeHub reported status not written", "err", err)
	}
}

// linkTarget hands the link's downstream traffic to the broker.
type linkTarget struct{ e *edge }

func (t linkTarget) TwinChanges(changes []twin.Change) {
	t.e.broker.NotifyDesired(changes)
	for _, c := range changes {
		if c.ID == t.e.cs.DeviceID+"/$edgeHub" && c.Section == crdt.Desired {
			t.e.twinReload(c.Version)
		}
		if c.ID == t.e.cs.DeviceID+"/"+agentModule && c.Section == crdt.Desired {
			t.e.applyAgent()
		}
	}
}

func (t linkTarget) Disconnect(id, reason string) { t.e.broker.Disconnect(id, reason) }

func (t linkTarget) PurgeQueues(ctx context.Context, id string) (int, error) {
	return t.e.broker.PurgeQueues(ctx, id)
}

func (t linkTarget) SendC2D(ctx context.Context, device string, m queue.Message) error {
	if err := t.e.broker.SendC2D(ctx, device, m); err != nil {
		return err
	}
	if t.e.downstream != nil { // the device may be below a child edge (nested edges)
		t.e.downstream.C2DAppended()
	}
	return nil
}

func (t linkTarget) InvokeMethod(ctx context.Context, target, name string, payload []byte, timeout time.Duration) protocol.MethodResult {
	return t.e.invoke(ctx, target, name, payload, timeout)
}

// generation returns an identity's generationId from the cache, for the
// broker to stamp on its messages.
func (e *edge) generation(id string) string {
	i, ok, err := e.ids.Get(id)
	if err != nil || !ok {
		return ""
	}
	return i.Generation
}
