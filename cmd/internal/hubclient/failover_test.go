package hubclient_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
	"github.com/outpost-edge/outpost/store/identity"
	synchub "github.com/outpost-edge/outpost/sync/hub"
)

// liveHub is a real hub (sync/hub) on 127.0.0.1 that counts the requests
// it serves.
type liveHub struct {
	url  string
	hits atomic.Int64
}

func newLiveHub(t *testing.T) *liveHub {
	t.Helper()
	h, err := synchub.Open(context.Background(), "", synchub.Options{HostName: "hub.test:8080", OwnerKey: ownerKey, InMemory: true,
		ImageDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	lh := &liveHub{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lh.hits.Add(1)
		h.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(func() { h.Stop(); srv.Close(); _ = h.Close() })
	lh.url = srv.URL
	return lh
}

// deadURL is the URL of a port nothing listens on any more.
func deadURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	return "http://" + l.Addr().String()
}

// clientStartingAt returns a client for urls whose first node tried is
// first (the start is random: new clients are made until one starts
// there).
func clientStartingAt(t *testing.T, urls, first string) *hubclient.Client {
	t.Helper()
	for range 200 {
		c, err := hubclient.FromEnv(ownerCS("hub.test:8080"), urls, func(string) string { return "" }, hubclient.Trust{})
		if err != nil {
			t.Fatal(err)
		}
		if c.URL == first {
			return c
		}
	}
	t.Fatalf("no client for %s started at %s in 200 tries", urls, first)
	return nil
}

func TestClientFailsOverToTheNextNode(t *testing.T) {
	live, dead := newLiveHub(t), deadURL(t)
	list := dead + ", " + live.url
	ctx := context.Background()

	c := clientStartingAt(t, list, dead)
	var out []identity.JSON
	if err := c.Do(ctx, http.MethodGet, "/devices", nil, &out); err != nil {
		t.Fatalf("GET with the first node dead: %v", err)
	}
	// A write whose connection was refused reached nobody: sent to the next node.
	c = clientStartingAt(t, list, dead)
	if err := c.Do(ctx, http.MethodPut, hubclient.PathOf("devices", "d1"), map[string]string{"deviceId": "d1"}, nil); err != nil {
		t.Fatalf("PUT with the first node refusing connections: %v", err)
	}
	if err := c.Do(ctx, http.MethodGet, hubclient.PathOf("devices", "d1"), nil, nil); err != nil {
		t.Fatalf("GET d1 after the PUT: %v", err)
	}
	if n := live.hits.Load(); n != 3 {
		t.Errorf("the live node served %d requests, want 3", n)
	}
}

func TestClientNamesEveryNodeTried(t *testing.T) {
	a, b := deadURL(t), deadURL(t)
	c, err := hubclient.FromEnv(ownerCS("hub.test:8080"), a+","+b, func(string) string { return "" }, hubclient.Trust{})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Do(context.Background(), http.MethodGet, "/devices", nil, nil)
	if !errors.Is(err, hubclient.ErrUnreachable) || !hubclient.Retryable(err) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	for _, want := range []string{"no hub node answered (2 tried)", a + ": ", b + ": ", "connection refused", "OUTPOST_HUB_URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
}

// swallowingNode accepts connections, reads a whole request (headers and
// body) and closes the connection without an answer; it counts requests.
func swallowingNode(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var n atomic.Int64
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			if req, err := http.ReadRequest(bufio.NewReader(conn)); err == nil {
				_, _ = io.Copy(io.Discard, req.Body)
				n.Add(1)
			}
			conn.Close()
		}
	}()
	return "http://" + l.Addr().String(), &n
}

func TestClientDoesNotResendAWriteThatMayHaveArrived(t *testing.T) {
	live := newLiveHub(t)
	node, got := swallowingNode(t)
	c := clientStartingAt(t, node+","+live.url, node)
	err := c.Do(context.Background(), http.MethodPut, hubclient.PathOf("devices", "d1"), map[string]string{"deviceId": "d1"}, nil)
	if err == nil || !strings.Contains(err.Error(), "may have applied it") || !strings.Contains(err.Error(), "PUT /devices/d1") {
		t.Fatalf("err = %v, want one that says the PUT may have been applied", err)
	}
	if got.Load() != 1 || live.hits.Load() != 0 {
		t.Fatalf("the first node read %d requests, the second served %d: want 1 and 0 (not sent again)", got.Load(), live.hits.Load())
	}
	// A read is safe to send again: the next node answers it.
	if err := c.Do(context.Background(), http.MethodGet, "/devices", nil, nil); err != nil {
		t.Fatalf("GET after the first node dropped it: %v", err)
	}
	if live.hits.Load() != 1 {
		t.Fatalf("the second node served %d requests, want 1", live.hits.Load())
	}
}

func TestClientPassesOverANodeWithoutLeader(t *testing.T) {
	live := newLiveHub(t)
	var asked atomic.Int64
	electing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"code":"NotLeader","message":"an election is running"}`)
	}))
	t.Cleanup(electing.Close)
	c := clientStartingAt(t, electing.URL+","+live.url, electing.URL)
	if err := c.Do(context.Background(), http.MethodGet, "/devices", nil, nil); err != nil {
		t.Fatalf("GET with the first node electing: %v", err)
	}
	// A write answered 503 is not sent again: the answer came after it arrived.
	c = clientStartingAt(t, electing.URL+","+live.url, electing.URL)
	err := c.Do(context.Background(), http.MethodPut, hubclient.PathOf("devices", "d1"), map[string]string{"deviceId": "d1"}, nil)
	if hubclient.StatusOf(err) != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "NotLeader") {
		t.Fatalf("PUT to an electing node: %v, want its 503 NotLeader", err)
	}
	if asked.Load() != 2 || live.hits.Load() != 1 {
		t.Fatalf("the electing node was asked %d times, the live one %d: want 2 and 1", asked.Load(), live.hits.Load())
	}
}

func TestClientWaitsOutAShortElection(t *testing.T) {
	var asked atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if asked.Add(1) <= 2 { // both nodes, first round
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"code":"NotLeader","message":"an election is running"}`)
			return
		}
		_, _ = io.WriteString(w, `[]`)
	}))
	t.Cleanup(srv.Close)
	// Two URLs of one server: two nodes to the client.
	urls := srv.URL + "," + strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	c, err := hubclient.FromEnv(ownerCS("hub.test:8080"), urls, func(string) string { return "" }, hubclient.Trust{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := c.Do(context.Background(), http.MethodGet, "/devices", nil, nil); err != nil {
		t.Fatalf("GET while the cluster elects: %v", err)
	}
	if took := time.Since(start); asked.Load() != 3 || took < 900*time.Millisecond {
		t.Fatalf("asked %d times in %s: want a second round after Retry-After (3 requests, ≥ 1 s)", asked.Load(), took)
	}
}

func TestClientPushImageFailsOverOnlyBeforeSending(t *testing.T) {
	live, dead := newLiveHub(t), deadURL(t)
	img := []byte("#!/bin/sh\necho module\n")
	c := clientStartingAt(t, dead+","+live.url, dead)
	if _, created, err := c.PushImage(context.Background(), bytes.NewReader(img), int64(len(img))); err != nil || !created {
		t.Fatalf("push with the first node refusing connections: created %v, %v", created, err)
	}
	node, got := swallowingNode(t)
	c = clientStartingAt(t, node+","+live.url, node)
	_, _, err := c.PushImage(context.Background(), bytes.NewReader(img), int64(len(img)))
	if err == nil || !strings.Contains(err.Error(), "may have applied it") || got.Load() != 1 || live.hits.Load() != 1 {
		t.Fatalf("push to a node that read it and hung up: %v; that node read %d, the live one served %d: want the error, 1 and 1",
			err, got.Load(), live.hits.Load())
	}
}

// Plain HTTP to one remote node of a list is refused whichever node the
// client picks first (at random): every node would get the owner's token.
func TestClientRefusesAPlainRemoteNodeOfAList(t *testing.T) {
	for range 20 {
		_, err := hubclient.FromEnv(ownerCS("h:1"), "http://127.0.0.1:9,http://hub.example:8080", func(string) string { return "" }, hubclient.Trust{})
		if err == nil || !strings.Contains(err.Error(), "plain HTTP to a hub that is not on this machine: http://hub.example:8080") {
			t.Fatalf("err = %v, want plain HTTP to http://hub.example:8080 refused", err)
		}
	}
}

// A DELETE is sent again to the next node when the connection broke after
// it may have reached the first: a 404 from the next says that the first
// probably deleted it, not only that it is not there.
func TestClientDeleteSentAgainSaysItMayBeDone(t *testing.T) {
	live := newLiveHub(t)
	node, got := swallowingNode(t)
	c := clientStartingAt(t, node+","+live.url, node)
	err := c.Send(context.Background(), hubclient.Request{Method: http.MethodDelete, Path: hubclient.PathOf("devices", "d1"),
		Header: http.Header{"If-Match": {"*"}}}, nil)
	if hubclient.StatusOf(err) != http.StatusNotFound || !strings.Contains(err.Error(), "probably deleted there") ||
		!strings.Contains(err.Error(), node) {
		t.Fatalf("err = %v, want the 404 and that %s probably deleted it", err, node)
	}
	if got.Load() != 1 || live.hits.Load() != 1 {
		t.Fatalf("the first node read %d requests, the second served %d: want 1 and 1", got.Load(), live.hits.Load())
	}
}

// A write answered 503 NoLeader (the cluster applied it nowhere) is sent
// again after Retry-After, to the one node there is, until the cluster has
// a leader; 503 NotLeader (it may have been applied) is not.
func TestClientSendsAWriteAgainWhileNoLeader(t *testing.T) {
	for _, tc := range []struct {
		code      string
		wantAsked int64
		wantErr   bool
	}{{"NoLeader", 3, false}, {"NotLeader", 1, true}} {
		var asked atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if asked.Add(1) <= 2 {
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, `{"code":"`+tc.code+`","message":"no leader yet"}`)
				return
			}
			_, _ = io.WriteString(w, `{"deviceId":"d1"}`)
		}))
		c, err := hubclient.FromEnv(ownerCS("hub.test:8080"), srv.URL, func(string) string { return "" }, hubclient.Trust{})
		if err != nil {
			t.Fatal(err)
		}
		err = c.Do(context.Background(), http.MethodPut, "/devices/d1", map[string]string{"deviceId": "d1"}, nil)
		srv.Close()
		if (err != nil) != tc.wantErr || asked.Load() != tc.wantAsked {
			t.Errorf("PUT answered 503 %s: err %v after %d requests; want error %v after %d", tc.code, err, asked.Load(), tc.wantErr, tc.wantAsked)
		}
	}
}
