// Package brokertest runs a real edge broker for tests, wired as
// `outpost edge` wires it: a broker.Broker listening on 127.0.0.1 over an
// in-memory Badger store holding the queues, the edge's twins and the
// identity cache, which authenticates SAS tokens. A second, hub-side
// (Cloud role) twin store writes desired properties, so desired changes
// reach the edge the real way: hub patch, delta, edge, notification of
// the connected clients.
//
// It is for tests only: no production code imports it.
package brokertest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/broker"
	"github.com/outpost-edge/outpost/broker/client"
	"github.com/outpost-edge/outpost/broker/route"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/store/twin"
)

// The edge device, the IoT Hub and the edge's device scope of every
// harness, and the gateway host name of connection strings.
const (
	EdgeID  = "gw1"
	HubHost = "hub.test"
	Scope   = "ms-azure-iot-edge://gw1-1234"
	Gateway = "edge.test"
)

// Timeout bounds every wait of this package.
const Timeout = 15 * time.Second

// Options configure a Harness.
type Options struct {
	// Routes is the route configuration as JSON ({"routes":{…}}); "" for
	// none.
	Routes string
	// Identities are created in the identity cache, enabled, each with a
	// new random SAS key (Harness.Keys), by id "d" or "d/m": EdgeID is the
	// edge device with its scope (created even if not listed), "EdgeID/m"
	// its modules, any other device a leaf device in the edge's scope.
	Identities []string
	// Broker, when set, changes the broker's options before it starts
	// (to add a TLS listener, wrap Auth, …).
	Broker func(*broker.Options)
}

// Harness is a started broker and its stores. Everything is closed when
// the test ends.
type Harness struct {
	Broker     *broker.Broker
	Queues     *queue.Store
	Twins      *twin.Store // the edge's
	Hub        *twin.Store // the hub's, which writes desired properties
	Identities *identity.Cache
	// Keys holds the SAS key of each identity by id ("d" or "d/m").
	Keys map[string][]byte

	t   testing.TB
	ctx context.Context
}

// New starts a broker on 127.0.0.1:0 (plain TCP) with standalone twins,
// and registers its shutdown with t.Cleanup.
func New(t testing.TB, o Options) *Harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	db, hubDB := openDB(t), openDB(t)
	h := &Harness{Keys: map[string][]byte{}, t: t, ctx: ctx}
	var err error
	h.Queues, err = queue.Open(ctx, db, queue.Options{})
	must(t, err)
	h.Twins, err = twin.Open(ctx, db, twin.Options{Role: twin.Edge, Name: EdgeID})
	must(t, err)
	h.Hub, err = twin.Open(ctx, hubDB, twin.Options{Role: twin.Cloud, Name: "hub"})
	must(t, err)
	h.Identities, err = identity.Open(ctx, db, identity.Options{})
	must(t, err)
	must(t, h.Identities.Put(ctx, h.identities(o.Identities)...))
	var cfg *route.Config
	if o.Routes != "" {
		cfg, err = route.ParseConfig([]byte(o.Routes))
		must(t, err)
	}
	opts := broker.Options{EdgeID: EdgeID, Queues: h.Queues, Twins: h.Twins,
		Routes: cfg, TCP: "127.0.0.1:0", StandaloneTwins: true, Now: time.Now}
	// Tokens expire by the broker's clock, which o.Broker may change.
	opts.Auth = broker.CacheAuth{IDs: h.Identities, EdgeID: EdgeID, Hosts: []string{HubHost}, Now: func() time.Time { return opts.Now() }}
	if o.Broker != nil {
		o.Broker(&opts)
	}
	h.Broker, err = broker.New(opts)
	must(t, err)
	// As the edge wires it: a change of an identity rechecks its session.
	h.Identities.Watch(h.Broker.IdentitiesChanged)
	must(t, h.Broker.Start())
	t.Cleanup(func() {
		h.Broker.Close()
		h.Queues.Close()
		cancel()
	})
	return h
}

// identities makes the identities of ids (plus the edge's), generating
// their keys.
func (h *Harness) identities(ids []string) []identity.Identity {
	if !slices.Contains(ids, EdgeID) {
		ids = append([]string{EdgeID}, ids...)
	}
	var all []identity.Identity
	for _, id := range ids {
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		h.Keys[id] = key
		d, m, err := identity.SplitID(id)
		must(h.t, err)
		idn := identity.Identity{DeviceID: d, ModuleID: m, Status: identity.Enabled, Auth: identity.Auth{Type: identity.AuthSAS, PrimaryKey: key}}
		switch {
		case id == EdgeID:
			idn.Edge, idn.DeviceScope = true, Scope
		case m == "":
			idn.ParentScopes = []string{Scope}
		}
		all = append(all, idn)
	}
	return all
}

func openDB(t testing.TB) *kv.DB {
	db, err := kv.Open("", kv.Options{InMemory: true})
	must(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// Context is cancelled when the test ends, after the broker closed.
func (h *Harness) Context() context.Context { return h.ctx }

// Addr is the address of listener name ("tcp", "tls", …), "" if there is
// none.
func (h *Harness) Addr(name string) string {
	if a := h.Broker.Addr(name); a != nil {
		return a.String()
	}
	return ""
}

// ConnString is the connection string of identity id ("d" or "d/m") with
// gateway as GatewayHostName.
func (h *Harness) ConnString(id, gateway string) string {
	d, m, _ := identity.SplitID(id)
	cs := "HostName=" + HubHost + ";DeviceId=" + d
	if m != "" {
		cs += ";ModuleId=" + m
	}
	return cs + ";SharedAccessKey=" + base64.StdEncoding.EncodeToString(h.Keys[id]) + ";GatewayHostName=" + gateway
}

// Client makes a client for id on the plain TCP listener, not connected,
// with short backoffs and a debug Logger; opts come after those. It is
// closed when the test ends.
func (h *Harness) Client(id string, opts ...client.Option) *client.Client {
	h.t.Helper()
	base := []client.Option{client.WithBroker("tcp://" + h.Addr("tcp")),
		client.WithBackoff(10*time.Millisecond, 100*time.Millisecond), client.WithLogger(Logger(h.t))}
	c, err := client.FromConnectionString(h.ConnString(id, Gateway), append(base, opts...)...)
	must(h.t, err)
	h.t.Cleanup(func() { c.Close() })
	return c
}

// PatchDesired changes id's desired properties at the hub and lets the
// edge learn it: the hub's delta is applied to the edge's twins and the
// broker notifies the connected clients.
func (h *Harness) PatchDesired(id, patch string) {
	h.t.Helper()
	_, err := h.Hub.PatchDesired(h.ctx, id, []byte(patch))
	must(h.t, err)
	batch, _, err := h.Hub.Delta(h.Twins.VV(), 1<<20)
	must(h.t, err)
	changes, err := h.Twins.ApplyDelta(h.ctx, batch)
	must(h.t, err)
	h.Broker.NotifyDesired(changes)
}

// Reported returns the reported properties of id's twin at the edge (nil
// if it has no twin).
func (h *Harness) Reported(id string) map[string]any {
	h.t.Helper()
	v, err := h.Twins.Get(id)
	if err != nil {
		return nil
	}
	var doc struct{ Reported map[string]any }
	must(h.t, json.Unmarshal(v.DeviceJSON(), &doc))
	return doc.Reported
}

// Queue is the queue of endpoint ("$upstream", a module input, …) at the
// default priority.
func (h *Harness) Queue(endpoint string) *queue.Queue {
	h.t.Helper()
	q, err := h.Queues.Queue(broker.QueueName(endpoint, route.DefaultPriority), queue.QueueOptions{})
	must(h.t, err)
	return q
}

// Messages reads the first 1000 messages of endpoint's queue.
func (h *Harness) Messages(endpoint string) []queue.Message {
	h.t.Helper()
	msgs, err := h.Queue(endpoint).Read(0, 1000)
	must(h.t, err)
	return msgs
}

// Eventually polls cond until it holds, failing t after Timeout.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Logger logs at debug level to t's output.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
