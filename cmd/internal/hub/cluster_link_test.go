package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/sync/protocol"
	"github.com/outpost-edge/outpost/sync/upstream"
)

// edgeSink stands in for the broker: it answers every method call, so an
// answer proves the call reached the edge.
type edgeSink struct{}

func (edgeSink) TwinChanges([]twin.Change)                            {}
func (edgeSink) Disconnect(string, string)                            {}
func (edgeSink) PurgeQueues(context.Context, string) (int, error)     { return 0, nil }
func (edgeSink) SendC2D(context.Context, string, queue.Message) error { return nil }
func (edgeSink) InvokeMethod(_ context.Context, target, name string, _ []byte, _ time.Duration) protocol.MethodResult {
	return protocol.MethodResult{Status: 200, Payload: []byte(fmt.Sprintf(`{"at":%q,"name":%q}`, target, name))}
}

// testEdge is an edge's store and link (no broker) against urls (the
// nodes of a hub cluster).
type testEdge struct {
	up   *queue.Queue
	link *upstream.Link
}

func startEdge(t *testing.T, cs sas.ConnString, urls ...string) *testEdge {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	db, err := kv.Open(t.TempDir(), kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	queues, err := queue.Open(ctx, db, queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	twins, err := twin.Open(ctx, db, twin.Options{Role: twin.Edge, Name: cs.DeviceID})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := identity.Open(ctx, db, identity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	link, err := upstream.New(upstream.Options{URLs: urls, DB: db, Queues: queues, Twins: twins, Identities: ids, Target: edgeSink{}, Edge: cs, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	up, err := queues.Queue("$upstream/pdefault", queue.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = link.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = queues.Close()
		_ = db.Close()
	})
	return &testEdge{up: up, link: link}
}

func (e *testEdge) send(t *testing.T, from, n int) {
	t.Helper()
	batch := make([]queue.Message, 0, n)
	for i := from; i < from+n; i++ {
		batch = append(batch, queue.Message{ID: fmt.Sprintf("m%d", i), Source: "devices/gw1", Body: []byte(fmt.Sprintf(`{"i":%d}`, i))})
	}
	if _, err := e.up.Append(context.Background(), batch...); err != nil {
		t.Fatal(err)
	}
}

// createEdge registers the edge device gw1 through url (again while the
// cluster settles) and returns its connection string.
func createEdge(t *testing.T, key []byte, url string) sas.ConnString {
	t.Helper()
	var body []byte
	eventually(t, "create the edge device", func() error {
		var code int
		code, body = call(t, key, "PUT", url+"/devices/gw1", map[string]any{"deviceId": "gw1", "capabilities": map[string]any{"iotEdge": true}})
		if code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	var gw identity.JSON
	if err := json.Unmarshal(body, &gw); err != nil {
		t.Fatal(err)
	}
	return sas.ConnString{HostName: clusterHost, DeviceID: "gw1", SharedAccessKey: gw.Authentication.SymmetricKey.PrimaryKey}
}

// events reads the whole event log at url: the bodies' i in seq order.
func events(t *testing.T, key []byte, url string) ([]int, error) {
	code, body := call(t, key, "GET", url+"/messages/events?from=1&limit=10000", nil)
	if code != 200 {
		return nil, fmt.Errorf("events: %d %s", code, body)
	}
	var evs []struct {
		Seq  uint64 `json:"seq"`
		Body []byte `json:"body"`
	}
	if err := json.Unmarshal(body, &evs); err != nil {
		return nil, err
	}
	var out []int
	var last uint64
	for _, e := range evs {
		if e.Seq <= last {
			return nil, fmt.Errorf("seq %d after %d", e.Seq, last)
		}
		last = e.Seq
		var b struct{ I int }
		if err := json.Unmarshal(e.Body, &b); err != nil {
			return nil, err
		}
		out = append(out, b.I)
	}
	return out, nil
}

// An edge whose link goes to one follower drains through it, answers a
// direct method invoked at another node, and keeps draining when the leader
// stops: every message once, in order.
func TestClusterEdgeThroughFollower(t *testing.T) {
	nodes, key := threeNodes(t)
	var leader *testNode
	eventually(t, "one leader", func() (err error) {
		leader, err = leaderOf(t, key, nodes)
		return err
	})
	var followers []*testNode
	for _, n := range nodes {
		if n != leader {
			followers = append(followers, n)
		}
	}
	edge := startEdge(t, createEdge(t, key, followers[1].ready.URL), followers[0].ready.URL)
	edge.send(t, 0, 500)
	eventually(t, "the first 500 events, read at the other follower", func() error {
		got, err := events(t, key, followers[1].ready.URL)
		if err == nil && len(got) != 500 {
			err = fmt.Errorf("%d events", len(got))
		}
		return err
	})
	eventually(t, "a method invoked at the other follower", func() error {
		code, body := call(t, key, "POST", followers[1].ready.URL+"/twins/gw1/methods", map[string]any{"methodName": "ping", "payload": map[string]any{}, "responseTimeoutInSeconds": 5})
		if code != 200 || !strings.Contains(string(body), `"name":"ping"`) {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	leader.stop()
	edge.send(t, 500, 500)
	eventually(t, "all 1000 events once, in order, after the leader stopped", func() error {
		got, err := events(t, key, followers[1].ready.URL)
		if err != nil {
			return err
		}
		if len(got) != 1000 {
			return fmt.Errorf("%d events", len(got))
		}
		for i, v := range got {
			if v != i {
				return fmt.Errorf("event %d holds %d", i, v)
			}
		}
		return nil
	})
}

// An edge that lists the leader among its hub nodes moves there from the
// follower it started on: the leader names itself on its answers.
func TestClusterEdgeMovesToLeader(t *testing.T) {
	nodes, key := threeNodes(t)
	var leader *testNode
	eventually(t, "one leader", func() (err error) {
		leader, err = leaderOf(t, key, nodes)
		return err
	})
	var follower *testNode
	for _, n := range nodes {
		if n != leader {
			follower = n
		}
	}
	edgeCS := createEdge(t, key, leader.ready.URL)
	// The follower knows the leader (it forwards): a 503 NoLeader from a
	// follower still catching up would be a real failover, which counts.
	eventually(t, "the follower forwarding to the leader", func() error {
		if code, body := call(t, key, "GET", follower.ready.URL+"/devices", nil); code != 200 {
			return fmt.Errorf("GET /devices at the follower: %d %s", code, body)
		}
		return nil
	})
	edge := startEdge(t, edgeCS, follower.ready.URL, leader.ready.URL)
	edge.send(t, 0, 10)
	eventually(t, "the edge on the leader", func() error {
		if st := edge.link.Status(); st.HubURL != leader.ready.URL {
			return fmt.Errorf("edge on %s, leader %s", st.HubURL, leader.ready.URL)
		}
		return nil
	})
	if st := edge.link.Status(); st.HubSwitches != 0 {
		t.Errorf("moving to the leader counted as %d switches (a switch is a failure)", st.HubSwitches)
	}
}
