package samples_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
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

const (
	edgeID  = "gw1"
	hubHost = "hub.test"
	scope   = "ms-azure-iot-edge://gw1-1234"
)

// harness is a real edge broker on 127.0.0.1: queue store, edge twin store
// fed by a hub twin store (desired changes take the real path), SAS
// authentication by the identity cache as in `outpost edge`.
type harness struct {
	t     *testing.T
	b     *broker.Broker
	qs    *queue.Store
	twins *twin.Store
	hub   *twin.Store
	keys  map[string][]byte
	ctx   context.Context
}

type auth struct{ ids *identity.Cache }

func (a auth) Authenticate(c broker.Credentials) (string, error) {
	id, err := a.ids.Authenticate(identity.AuthRequest{
		ClientID: c.ClientID, Username: c.Username, Password: string(c.Password),
		EdgeDeviceID: edgeID, HostNames: []string{hubHost}, Now: time.Now(),
	})
	return id.ID(), err
}

func newHarness(t *testing.T, routes string, change func(*broker.Options)) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	db, hubDB := openDB(t), openDB(t)
	qs, err := queue.Open(ctx, db, queue.Options{})
	check(t, err)
	twins, err := twin.Open(ctx, db, twin.Options{Role: twin.Edge, Name: edgeID})
	check(t, err)
	hub, err := twin.Open(ctx, hubDB, twin.Options{Role: twin.Cloud, Name: "hub"})
	check(t, err)
	ids, err := identity.Open(ctx, db, identity.Options{})
	check(t, err)
	h := &harness{t: t, qs: qs, twins: twins, hub: hub, keys: map[string][]byte{}, ctx: ctx}
	var all []identity.Identity
	for _, id := range []string{edgeID, edgeID + "/sensor", edgeID + "/filter", edgeID + "/junk"} {
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		h.keys[id] = key
		d, m, _ := identity.SplitID(id)
		idn := identity.Identity{DeviceID: d, ModuleID: m, Status: identity.Enabled, Auth: identity.Auth{Type: identity.AuthSAS, PrimaryKey: key}}
		if m == "" {
			idn.Edge, idn.DeviceScope = true, scope
		}
		all = append(all, idn)
	}
	check(t, ids.Put(ctx, all...))
	cfg, err := route.ParseConfig([]byte(routes))
	check(t, err)
	opts := broker.Options{EdgeID: edgeID, Auth: auth{ids}, Queues: qs, Twins: twins, Routes: cfg, TCP: "127.0.0.1:0", StandaloneTwins: true}
	if change != nil {
		change(&opts)
	}
	h.b, err = broker.New(opts)
	check(t, err)
	check(t, h.b.Start())
	t.Cleanup(func() {
		h.b.Close()
		qs.Close()
		cancel()
	})
	return h
}

func openDB(t *testing.T) *kv.DB {
	db, err := kv.Open("", kv.Options{InMemory: true})
	check(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (h *harness) connString(id, gateway string) string {
	d, m, _ := identity.SplitID(id)
	return fmt.Sprintf("HostName=%s;DeviceId=%s;ModuleId=%s;SharedAccessKey=%s;GatewayHostName=%s",
		hubHost, d, m, base64.StdEncoding.EncodeToString(h.keys[id]), gateway)
}

// newClient makes an unconnected client for id on the plain listener.
func (h *harness) newClient(id string) *client.Client {
	h.t.Helper()
	c, err := client.FromConnectionString(h.connString(id, "edge.test"), client.WithBroker("tcp://"+h.b.Addr("tcp").String()),
		client.WithBackoff(10*time.Millisecond, 100*time.Millisecond), client.WithLogger(testLogger(h.t)))
	check(h.t, err)
	h.t.Cleanup(func() { c.Close() })
	return c
}

// patchDesired changes desired properties as the hub does and lets the
// edge learn it.
func (h *harness) patchDesired(id, patch string) {
	h.t.Helper()
	_, err := h.hub.PatchDesired(h.ctx, id, []byte(patch))
	check(h.t, err)
	batch, _, err := h.hub.Delta(h.twins.VV(), 1<<20)
	check(h.t, err)
	changes, err := h.twins.ApplyDelta(h.ctx, batch)
	check(h.t, err)
	h.b.NotifyDesired(changes)
}

// reported returns the reported properties of id's twin.
func (h *harness) reported(id string) map[string]any {
	v, err := h.twins.Get(id)
	if err != nil {
		return nil
	}
	var doc struct{ Reported map[string]any }
	check(h.t, json.Unmarshal(v.DeviceJSON(), &doc))
	return doc.Reported
}

func (h *harness) upstream() []queue.Message {
	q, err := h.qs.Queue(broker.QueueName("$upstream", route.DefaultPriority), queue.QueueOptions{})
	check(h.t, err)
	msgs, err := q.Read(0, 1000)
	check(h.t, err)
	return msgs
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}
