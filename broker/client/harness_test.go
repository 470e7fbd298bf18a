package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"sync"
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

// harness is a real edge broker on 127.0.0.1 with a queue store, an edge
// twin store fed by a hub-side twin store (so desired changes follow the
// real path: hub patch → delta → edge → NotifyDesired), and the identity
// cache authenticating SAS tokens exactly as `outpost edge` does.
type harness struct {
	t     *testing.T
	b     *broker.Broker
	qs    *queue.Store
	twins *twin.Store // the edge's
	hub   *twin.Store // the hub's, which writes desired properties
	ids   *identity.Cache
	addr  string
	keys  map[string][]byte
	auth  *recordingAuth
	ctx   context.Context
}

// recordingAuth is the edge's authenticator (identity.Cache) plus a record
// of the passwords presented and a switch to refuse an identity.
type recordingAuth struct {
	ids *identity.Cache

	mu        sync.Mutex
	passwords map[string][]string
	refuse    map[string]bool
}

func (a *recordingAuth) Authenticate(c broker.Credentials) (string, error) {
	a.mu.Lock()
	a.passwords[c.ClientID] = append(a.passwords[c.ClientID], string(c.Password))
	refused := a.refuse[c.ClientID]
	a.mu.Unlock()
	if refused {
		return "", fmt.Errorf("%s refused by the test", c.ClientID)
	}
	id, err := a.ids.Authenticate(identity.AuthRequest{
		ClientID: c.ClientID, Username: c.Username, Password: string(c.Password),
		EdgeDeviceID: edgeID, HostNames: []string{hubHost}, Now: time.Now(),
	})
	if err != nil {
		return "", err
	}
	return id.ID(), nil
}

func (a *recordingAuth) setRefused(id string, on bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refuse[id] = on
}

func (a *recordingAuth) passwordsOf(id string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.passwords[id]...)
}

func newHarness(t *testing.T, routes string, change func(*broker.Options)) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	db := openDB(t)
	hubDB := openDB(t)
	qs, err := queue.Open(ctx, db, queue.Options{})
	check(t, err)
	twins, err := twin.Open(ctx, db, twin.Options{Role: twin.Edge, Name: edgeID})
	check(t, err)
	hub, err := twin.Open(ctx, hubDB, twin.Options{Role: twin.Cloud, Name: "hub"})
	check(t, err)
	ids, err := identity.Open(ctx, db, identity.Options{})
	check(t, err)
	h := &harness{t: t, qs: qs, twins: twins, hub: hub, ids: ids, keys: map[string][]byte{}, ctx: ctx}
	h.auth = &recordingAuth{ids: ids, passwords: map[string][]string{}, refuse: map[string]bool{}}
	var all []identity.Identity
	for _, id := range []string{edgeID, edgeID + "/a", edgeID + "/b", "dev1"} {
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		h.keys[id] = key
		d, m, _ := identity.SplitID(id)
		idn := identity.Identity{DeviceID: d, ModuleID: m, Status: identity.Enabled, Auth: identity.Auth{Type: identity.AuthSAS, PrimaryKey: key}}
		switch {
		case id == edgeID:
			idn.Edge, idn.DeviceScope = true, scope
		case m == "":
			idn.ParentScopes = []string{scope}
		}
		all = append(all, idn)
	}
	check(t, ids.Put(ctx, all...))
	var cfg *route.Config
	if routes != "" {
		cfg, err = route.ParseConfig([]byte(routes))
		check(t, err)
	}
	opts := broker.Options{EdgeID: edgeID, Auth: h.auth, Queues: qs, Twins: twins, Routes: cfg, TCP: "127.0.0.1:0", StandaloneTwins: true}
	if change != nil {
		change(&opts)
	}
	b, err := broker.New(opts)
	check(t, err)
	check(t, b.Start())
	h.b = b
	if a := b.Addr("tcp"); a != nil {
		h.addr = a.String()
	}
	t.Cleanup(func() {
		b.Close()
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

// connString is the connection string of identity id ("d" or "d/m").
func (h *harness) connString(id string) string {
	d, m, _ := identity.SplitID(id)
	cs := "HostName=" + hubHost + ";DeviceId=" + d
	if m != "" {
		cs += ";ModuleId=" + m
	}
	return cs + ";SharedAccessKey=" + base64.StdEncoding.EncodeToString(h.keys[id]) + ";GatewayHostName=edge.test"
}

// newClient makes a client for id on the plain TCP listener, not connected.
func (h *harness) newClient(id string, opts ...client.Option) *client.Client {
	h.t.Helper()
	base := []client.Option{client.WithBroker("tcp://" + h.addr), client.WithBackoff(10*time.Millisecond, 100*time.Millisecond), client.WithLogger(testLogger(h.t))}
	c, err := client.FromConnectionString(h.connString(id), append(base, opts...)...)
	check(h.t, err)
	h.t.Cleanup(func() { c.Close() })
	return c
}

// connect connects c within 10 s.
func (h *harness) connect(c *client.Client) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer cancel()
	check(h.t, c.Connect(ctx))
}

// cut drops id's connection at the broker and waits until c made a new
// one (a reconnection can be too quick to see c disconnected).
func (h *harness) cut(c *client.Client, id string) {
	h.t.Helper()
	n := len(h.auth.passwordsOf(id))
	h.b.Disconnect(id, "test: connection cut")
	eventually(h.t, "a new connection", func() bool { return len(h.auth.passwordsOf(id)) > n && c.IsConnected() })
}

// patchDesired changes desired properties as the hub does and lets the
// edge learn it (twin delta, then the notification of connected clients).
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

func (h *harness) queue(endpoint string) *queue.Queue {
	q, err := h.qs.Queue(broker.QueueName(endpoint, route.DefaultPriority), queue.QueueOptions{})
	check(h.t, err)
	return q
}

// eventually polls cond for up to 10 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func recv[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("nothing received in 10 s")
		var zero T
		return zero
	}
}

// nothing fails if ch receives within d.
func nothing[T any](t testing.TB, ch <-chan T, d time.Duration) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected %v", v)
	case <-time.After(d):
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func timeout(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// deadAddr is a loopback address (port from :0) where nothing listens.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(t, err)
	addr := l.Addr().String()
	l.Close()
	return addr
}

// edgeCA makes a CA and a server certificate for 127.0.0.1 signed by it.
func edgeCA(t *testing.T) (caPEM []byte, server tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test edge CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	check(t, err)
	ca, err := x509.ParseCertificate(caDER)
	check(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	check(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
