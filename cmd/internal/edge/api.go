package edge

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sort"
	"time"

	"github.com/outpost-edge/outpost/broker"
	"github.com/outpost-edge/outpost/cmd/internal/localapi"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/sync/upstream"
)

// serveAPI starts the local HTTP API (cmd/internal/localapi) when --api is
// set.
func (e *edge) serveAPI() (io.Closer, error) {
	if e.cfg.API == "" {
		return nil, nil
	}
	s, err := localapi.Open(localapi.Options{
		Addr: e.cfg.API, DataDir: e.cfg.DataDir, Hostname: e.cfg.Hostname, Logger: e.cfg.Logger,
		Status: e.status, LiveStatus: e.liveStatus,
		Twin: func(id string) ([]byte, error) {
			v, err := e.twins.Get(id)
			if err != nil {
				return nil, err
			}
			return v.ServiceJSON(), nil
		},
		ReadQueue:   e.readQueue,
		KnownDevice: e.knownLeaf,
		SendC2D:     e.broker.SendC2D,
		Invoke:      e.invoke,
		Logs: func(ctx context.Context, module string, tail int, follow bool, w io.Writer) error {
			return e.sup.Logs(ctx, module, tail, follow, w)
		},
		Restart:    e.sup.RestartModule,
		TwinFields: e.twinFields,
		Clients:    e.clients,
	})
	if err != nil {
		return nil, err
	}
	e.ready.API = s.Addr()
	return s, nil
}

// readQueue reads an existing queue without consuming it.
func (e *edge) readQueue(name string, after uint64, n int) ([]queue.Message, bool, error) {
	q, ok := e.queues.Lookup(name)
	if !ok {
		return nil, false, nil
	}
	msgs, err := q.Read(after, n)
	return msgs, true, err
}

// knownLeaf reports whether id is a leaf device in the identity cache:
// the only targets of cloud-to-device messages.
func (e *edge) knownLeaf(id string) bool {
	ident, ok, err := e.ids.Get(id)
	return err == nil && ok && !ident.Edge && ident.ModuleID == ""
}

func (e *edge) status() localapi.Status {
	rep := e.sup.Status()
	st := localapi.Status{DeviceID: e.cs.DeviceID, Clock: e.clock.State(), Modules: rep.Modules,
		Deployment: rep.LastDesiredStatus, DeploymentVersion: rep.LastDesiredVersion, ModuleIsolation: e.isolation,
		Goroutines: runtime.NumGoroutine()}
	if e.link != nil {
		u := e.link.Status() // one snapshot for the link line and the counters
		st.Uplink = &u
	}
	st.Link = e.linkState(st.Uplink)
	if e.downstream != nil {
		d := e.downstream.Stats()
		st.Downstream = &d
	}
	stats := e.queues.Stats()
	names := make([]string, 0, len(stats))
	for n := range stats {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := stats[n]
		st.Queues = append(st.Queues, localapi.QueueStatus{Name: n, Depth: s.Depth, Bytes: s.Bytes, OldestSeconds: s.OldestAge.Seconds(),
			Appended: int64(s.Appended), Acked: int64(s.Acked), Expired: int64(s.Expired), Dropped: int64(s.Dropped), Rejected: int64(s.Rejected), NoSpace: int64(s.NoSpace)})
	}
	b := e.broker.Stats()
	st.Broker = localapi.BrokerStatus{Received: b.Received.Load(), Stored: b.Stored.Load(), NoRoute: b.NoRoute.Load(), Refused: b.Refused.Load(),
		TopicReceived: b.TopicReceived.Load(), TopicStored: b.TopicStored.Load(), TopicNoRoute: b.TopicNoRoute.Load(),
		SessionStateFailed: b.StateFailed.Load(), WillsAfterRestart: b.WillsAfterRestart.Load(),
		RefusedBy: map[string]int64{}, Delivered: b.Delivered.Load(), AuthFailed: b.AuthFailed.Load(), Denied: b.Denied.Load(),
		SessionsRevoked: b.SessionsRevoked.Load(), SessionsExpired: b.SessionsExpired.Load(),
		Connections: b.Connections.Load(), ConnectionsRefusedBy: map[string]int64{}, SubscriptionsRefused: b.SubRefused.Load(),
		AuthFailedBy: map[string]int64{}}
	for r := range broker.NumAuthReasons {
		st.Broker.AuthFailedBy[r.String()] = b.AuthRefusedBy[r].Load()
	}
	for r := range broker.NumReasons {
		st.Broker.RefusedBy[r.String()] = b.RefusedBy[r].Load()
	}
	for r := range broker.NumConnReasons {
		st.Broker.ConnectionsRefusedBy[r.String()] = b.ConnRefusedBy[r].Load()
	}
	st.Disk = e.diskStatus()
	st.Memory = e.mem.status(e.db.Options())
	return st
}

// liveStatus is what the dashboard's sampler reads while no one watches:
// the link, the broker's received count and the queues' depths, without
// reading each queue's oldest message, the supervisor or the disk.
func (e *edge) liveStatus() localapi.Status {
	st := localapi.Status{Broker: localapi.BrokerStatus{Received: e.broker.Stats().Received.Load()}}
	if e.link != nil {
		u := e.link.Status()
		st.Uplink = &u
	}
	for n, d := range e.queues.Depths() {
		st.Queues = append(st.Queues, localapi.QueueStatus{Name: n, Depth: d})
	}
	return st
}

// linkState describes the link from its status st (nil: standalone).
func (e *edge) linkState(st *upstream.Status) string {
	if st == nil {
		return "standalone (--hub-url off): messages for $upstream stay queued"
	}
	s := fmt.Sprintf("%s since %s (hub %s)", st.State, st.Since.UTC().Format(time.RFC3339), st.HubURL)
	if st.LastError != "" && st.State != "online" {
		s += ": " + st.LastError
	}
	return s
}

// twinFields lists up to max twins' registers for the dashboard, with the
// edge's writes the hub has not acknowledged marked pending.
func (e *edge) twinFields(max int) ([]localapi.TwinFields, error) {
	ids, err := e.twins.IDs()
	if err != nil {
		return nil, err
	}
	out := make([]localapi.TwinFields, 0, min(len(ids), max))
	for _, id := range ids[:min(len(ids), max)] {
		fs, err := e.twins.Fields(id, "hub")
		if err != nil {
			continue // deleted meanwhile
		}
		out = append(out, localapi.TwinFields{ID: id, Fields: fs})
	}
	return out, nil
}

// clients lists the broker's connected MQTT clients for GET /clients.
func (e *edge) clients() []localapi.MQTTClient {
	cs := e.broker.Clients()
	out := make([]localapi.MQTTClient, len(cs))
	for i, c := range cs {
		out[i] = localapi.MQTTClient{ClientID: c.ClientID, DeviceID: c.DeviceID, ModuleID: c.ModuleID, Listener: c.Listener,
			RemoteAddr: c.RemoteAddr, Protocol: c.Protocol, ConnectedSince: c.Since.UTC(), Subscriptions: c.Subscriptions,
			Inflight: c.Inflight, Received: c.Received, Delivered: c.Delivered}
	}
	return out
}
