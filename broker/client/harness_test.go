package client_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/broker"
	"github.com/outpost-edge/outpost/broker/brokertest"
	"github.com/outpost-edge/outpost/broker/client"
	"github.com/outpost-edge/outpost/store/queue"
)

const edgeID = brokertest.EdgeID

// harness is brokertest's real edge broker with the identities these
// tests use (modules a and b, leaf device dev1) and an authenticator that
// records the passwords presented and can refuse an identity.
type harness struct {
	*brokertest.Harness
	t    *testing.T
	b    *broker.Broker
	addr string // of the plain TCP listener
	auth *recordingAuth
	ctx  context.Context
}

// recordingAuth wraps the edge's authenticator (the identity cache) with a
// record of the passwords presented and a switch to refuse an identity.
type recordingAuth struct {
	next broker.Authenticator

	mu        sync.Mutex
	passwords map[string][]string
	refuse    map[string]bool
}

func (a *recordingAuth) Recheck(l broker.Login) error { return a.next.Recheck(l) }

func (a *recordingAuth) Authenticate(c broker.Credentials) (broker.Login, error) {
	a.mu.Lock()
	a.passwords[c.ClientID] = append(a.passwords[c.ClientID], string(c.Password))
	refused := a.refuse[c.ClientID]
	a.mu.Unlock()
	if refused {
		return broker.Login{}, fmt.Errorf("%s refused by the test", c.ClientID)
	}
	return a.next.Authenticate(c)
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
	auth := &recordingAuth{passwords: map[string][]string{}, refuse: map[string]bool{}}
	bt := brokertest.New(t, brokertest.Options{
		Routes:     routes,
		Identities: []string{edgeID, edgeID + "/a", edgeID + "/b", "dev1"},
		Broker: func(o *broker.Options) {
			auth.next, o.Auth = o.Auth, auth
			if change != nil {
				change(o)
			}
		},
	})
	return &harness{Harness: bt, t: t, b: bt.Broker, addr: bt.Addr("tcp"), auth: auth, ctx: bt.Context()}
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// connString is the connection string of identity id ("d" or "d/m").
func (h *harness) connString(id string) string { return h.ConnString(id, brokertest.Gateway) }

// newClient makes a client for id on the plain TCP listener, not connected.
func (h *harness) newClient(id string, opts ...client.Option) *client.Client {
	h.t.Helper()
	return h.Client(id, opts...)
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

func (h *harness) patchDesired(id, patch string) {
	h.t.Helper()
	h.PatchDesired(id, patch)
}

func (h *harness) queue(endpoint string) *queue.Queue {
	h.t.Helper()
	return h.Queue(endpoint)
}

var (
	eventually = brokertest.Eventually
	edgeCA     = brokertest.EdgeCA
)

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
