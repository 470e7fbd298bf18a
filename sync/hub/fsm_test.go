package hub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// stepClock advances by a millisecond at every reading, from a fixed start.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

// sampleCommands has one of every command type, with every field set.
func sampleCommands() []any {
	id := identity.Identity{DeviceID: "dev1", Generation: "g1", DeviceScope: "ms-azure-iot-edge://dev1-1", ParentScopes: []string{"ms-azure-iot-edge://gw1-1"}}
	msgs := protocol.Messages{Instance: "edge:gw1.a1", Queue: "$upstream/pdefault", Msgs: []protocol.Message{
		{Seq: 1, ID: "m1", Source: "devices/dev1", Props: map[string]string{"k": "v"}, Sys: map[string]string{"s": "t"}, Body: []byte("x"), EnqueuedAt: 5, EdgePath: []string{"gw2"}}}}
	return []any{
		putIdentities{IDs: []identity.Identity{id}},
		deleteIdentities{IDs: []string{"dev1", "gw1/m"}},
		writeTwin{ID: "dev1", Tags: []byte(`{"a":1}`), Desired: []byte(`{"b":2}`), Replace: true, IfMatch: 3},
		applyConfiguration{Device: "gw1", Desired: map[string]json.RawMessage{"$edgeAgent": json.RawMessage(`{}`)}, New: []identity.Identity{newModule("gw1", "m")},
			AtScale: true, Configs: []string{"base@1", "layer@2"}},
		sendC2D{Device: "dev1", Msg: queue.Message{ID: "c1", Body: []byte("hi"), Props: map[string]string{"p": "q"}}},
		appendEvents{Edge: "gw1", Frame: msgs},
		mergeTwins{Edge: "gw1", Batch: twin.Batch{}},
		expireEvents{Before: 1700000000000, Max: 1000},
		ackPull{Edge: "gw1", Instance: "edge:gw1.a1", VV: crdt.VV{"hub.1": 3}},
		gcTwins{IDs: []string{"dev1", "gw1/$edgeAgent"}},
		expireC2D{Max: 1000},
		setNode{ID: "n1", Raft: "127.0.0.1:7001", API: "http://127.0.0.1:8081"},
		removeNode{ID: "n2"},
		setOwner{Key: []byte("owner-key")},
		putImage{Digest: "sha256:" + strings.Repeat("ab", 32), Size: 7, Created: 1700000000000},
		deleteImage{Digest: "sha256:" + strings.Repeat("ab", 32)},
		putConfiguration{Config: configRecord{ID: "base", SchemaVersion: "1.0", Labels: map[string]string{"l": "v"}, Content: []byte(`{"$edgeAgent":{}}`),
			TargetCondition: "tags.env='prod'", Priority: 5, Metrics: map[string]string{"m": "SELECT deviceId FROM devices"}, Version: 1, Created: 1, Updated: 2}, IfMatch: 1},
		deleteConfiguration{ID: "base"},
		setPresence{Edge: "gw1", Full: true, IDs: []protocol.Presence{{ID: "dev1", Connected: true, Since: 1700000000000, Activity: 1700000000500}}},
		putJob{ID: "j1", Type: jobDeviceMethod, Condition: "tags.env = 'prod'", Start: 1700000000000, MaxSeconds: 60,
			Twin: []byte(`{"tags":{"a":1}}`), Method: &jobMethod{Name: "reboot", Payload: []byte(`{"x":1}`), ResponseTimeout: 30, ConnectTimeout: 5}},
		jobProgress{ID: "j1", Devices: []deviceResult{{Device: "dev1", Status: statusCompleted, MethodStatus: 200, Payload: []byte(`{"ok":true}`),
			ErrCode: "DeviceNotOnline", ErrDesc: "not connected"}}, Status: statusFailed, Failure: "timed out", Message: "timed out"},
		cancelJob{ID: "j1"},
		expireJobs{Before: 1700000000000, Max: 1000},
		setRouteCursors{Cursors: map[string]uint64{"js": 7, "hook": 3}},
	}
}

func TestCommandsRoundTrip(t *testing.T) {
	seen := map[uint64]bool{}
	for _, cmd := range sampleCommands() {
		entry, err := encodeCommand(cmd, 42)
		if err != nil {
			t.Fatalf("encode %T: %v", cmd, err)
		}
		got, at, err := decodeCommand(entry)
		if err != nil {
			t.Fatalf("decode %T: %v", cmd, err)
		}
		if at != 42 || !reflect.DeepEqual(normalize(t, got), normalize(t, cmd)) {
			t.Errorf("%T: decoded %+v at %d, want %+v at 42", cmd, got, at, cmd)
		}
		typ, _ := commandType(cmd)
		seen[typ] = true
	}
	for typ, spec := range commandSpecs {
		if !seen[typ] {
			t.Errorf("command %s (type %d) has no sample in sampleCommands", spec.name, typ)
		}
	}
}

// normalize re-encodes a command, so nil and empty compare equal.
func normalize(t *testing.T, cmd any) []byte {
	b, err := kv.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeCommandRefuses(t *testing.T) {
	body, _ := kv.Marshal(expireEvents{Before: 1, Max: 2})
	env := func(e envelope) []byte { b, _ := kv.Marshal(e); return b }
	for name, entry := range map[string][]byte{
		"empty":          nil,
		"garbage":        {0xff, 0x00, 0x13},
		"unknown type":   env(envelope{V: 1, T: 999, B: body}),
		"newer version":  env(envelope{V: 2, T: cmdExpireEvents, B: body}),
		"version 0":      env(envelope{V: 0, T: cmdExpireEvents, B: body}),
		"body not cbor":  env(envelope{V: 1, T: cmdExpireEvents, B: []byte{0xff}}),
		"body wrong map": env(envelope{V: 1, T: cmdSendC2D, B: body}),
	} {
		if _, _, err := decodeCommand(entry); !errors.Is(err, ErrCommand) {
			t.Errorf("%s: %v, want ErrCommand", name, err)
		}
	}
	f := memFSM(t)
	noID, _ := encodeCommand(sendC2D{Device: "dev1", Msg: queue.Message{Body: []byte("x")}}, 1)
	if _, err := f.Apply(noID); !errors.Is(err, ErrInvalid) {
		t.Errorf("a C2D command without a message id: %v, want ErrInvalid (Apply would draw one at random)", err)
	}
	if _, err := encodeCommand(struct{}{}, 0); !errors.Is(err, ErrCommand) {
		t.Errorf("encode of a non-command: %v, want ErrCommand", err)
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, cmd := range sampleCommands() {
		entry, err := encodeCommand(cmd, 7)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(entry)
	}
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, entry []byte) {
		cmd, at, err := decodeCommand(entry)
		if err != nil {
			if !errors.Is(err, ErrCommand) {
				t.Fatalf("error %v is not an ErrCommand", err)
			}
			return
		}
		again, err := encodeCommand(cmd, at)
		if err != nil {
			t.Fatalf("decoded %T does not encode again: %v", cmd, err)
		}
		cmd2, at2, err := decodeCommand(again)
		if err != nil || at2 != at || !bytes.Equal(normalize(t, cmd2), normalize(t, cmd)) {
			t.Fatalf("re-encoded %T differs: %v", cmd, err)
		}
	})
}

// recordedHub is a hub whose every entry is recorded, from a snapshot of
// its state before the first (the twin replica's identity is made when
// the store opens, not by a command: see docs/ARCHITECTURE.md).
type recordedHub struct {
	h    *Hub
	base []byte
	log  [][]byte
}

func openRecorded(t *testing.T) *recordedHub {
	t.Helper()
	clk := &stepClock{t: time.Now().Truncate(time.Hour)}
	h, err := Open(context.Background(), "", Options{HostName: "hub.test", OwnerKey: ownerKey, InMemory: true, Now: clk.Now, Retention: -1,
		Incarnation: DefaultIncarnation}) // as the replays' FSMs
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	r := &recordedHub{h: h}
	var buf bytes.Buffer
	if err := h.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	r.base = buf.Bytes()
	h.recordEntry = func(e []byte) { r.log = append(r.log, bytes.Clone(e)) }
	return r
}

// runScenario drives the hub as the scenarios do: a registry of two edges
// with children, twin patches and replaces, a deployment, event-log
// batches from both edges with a retried frame, a twin delta from an edge,
// cloud-to-device messages, a deletion and an expiry.
func runScenario(t *testing.T, h *Hub) {
	t.Helper()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	gws := map[string]identity.Identity{}
	for _, gw := range []string{"gw1", "gw2"} {
		id, err := h.PutDevice(ctx, identity.JSON{DeviceID: gw, Capabilities: &identity.Capabilities{IoTEdge: true}})
		must(err)
		gws[gw] = id
	}
	for _, d := range []identity.JSON{{DeviceID: "dev1", ParentScopes: []string{gws["gw1"].DeviceScope}},
		{DeviceID: "dev2", ParentScopes: []string{gws["gw2"].DeviceScope}}, {DeviceID: "other"}} {
		_, err := h.PutDevice(ctx, d)
		must(err)
	}
	_, err := h.UpdateTwin(ctx, "dev1", []byte(`{"tags":{"site":"a"},"properties":{"desired":{"rate":5}}}`), false)
	must(err)
	_, err = h.UpdateTwin(ctx, "dev2", []byte(`{"properties":{"desired":{"rate":7,"mode":"x"}}}`), true)
	must(err)
	_, err = h.ApplyConfiguration(ctx, "gw1", []byte(`{"modulesContent":{"$edgeAgent":{"properties.desired":{"modules":{"sim":{}}}},"$edgeHub":{"properties.desired":{"routes":{}}}}}`))
	must(err)
	for i := uint64(1); i <= 3; i++ {
		for _, gw := range []string{"gw1", "gw2"} {
			dev := map[string]string{"gw1": "dev1", "gw2": "dev2"}[gw]
			frame := protocol.Messages{Instance: "edge:" + gw + ".a", Queue: "$upstream/pdefault", Msgs: []protocol.Message{
				{Seq: 2*i - 1, ID: "m", Source: "devices/" + dev, Body: []byte{byte(i)}, EnqueuedAt: 1000},
				{Seq: 2 * i, Source: "devices/" + gw + "/modules/sim", Body: []byte("y")}}} // gw2 has no sim: refused
			_, err := h.Messages(ctx, gw, frame)
			must(err)
			if gw == "gw1" && i == 2 { // the ack was lost: the edge sends the frame again
				ack, err := h.Messages(ctx, gw, frame)
				must(err)
				if ack.Duplicates != 2 || ack.Appended != 0 {
					t.Fatalf("retried frame: %+v", ack)
				}
			}
		}
	}
	edgeTwins(t, h)
	_, err = h.SendC2D(ctx, "dev1", queue.Message{Body: []byte("hello")})
	must(err)
	_, err = h.SendC2D(ctx, "dev1", queue.Message{Body: []byte("again")})
	must(err)
	// gw1 pulls: its version vector acknowledges the hub's twin writes; the
	// second pull says it holds the first cloud-to-device message.
	push, err := h.Pull(ctx, "gw1", protocol.Pull{Instance: "edge:gw1.a", TwinVV: h.twins().VV(), WaitMs: 1})
	must(err)
	if len(push.C2D) != 2 {
		t.Fatalf("first pull: %d cloud-to-device messages, want 2", len(push.C2D))
	}
	push, err = h.Pull(ctx, "gw1", protocol.Pull{Instance: "edge:gw1.a", Hub: push.Hub, TwinVV: h.twins().VV(), WaitMs: 1,
		C2D: map[string]uint64{"dev1": push.C2D[0].Seq}})
	must(err)
	if len(push.C2D) != 1 || string(push.C2D[0].Body) != "again" {
		t.Fatalf("second pull: %+v, want the second message only", push.C2D)
	}
	must(h.SetRouteCursors(ctx, map[string]uint64{"js": 4, "hook": 1}))
	must(h.DeleteDevice(ctx, "other"))
	_, err = h.applyResult(ctx, expireEvents{Before: h.opts.Now().Add(-time.Hour).UnixMilli(), Max: 10})
	must(err)
}

// edgeTwins merges reported properties written on gw1's twin replica.
func edgeTwins(t *testing.T, h *Hub) {
	t.Helper()
	ctx := context.Background()
	db, err := kv.Open("", kv.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ts, err := twin.Open(ctx, db, twin.Options{Role: twin.Edge, Name: "gw1", Now: func() int64 { return h.opts.Now().UnixMilli() }})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := ts.BeginSession()
	if _, err := ts.PatchReported(ctx, "dev1", s, []byte(`{"temp":21}`)); err != nil {
		t.Fatal(err)
	}
	b, _, _ := ts.Delta(crdt.VV{}, 100)
	if _, err := h.Twins(ctx, "gw1", protocol.TwinsUp{Instance: string(ts.Replica()), Batch: b}); err != nil {
		t.Fatal(err)
	}
}

// digestState hashes every key and value of a kv store.
func digestState(t *testing.T, db *kv.DB) (string, int) {
	t.Helper()
	hash, n := sha256.New(), 0
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			hash.Write(binaryLen(it.Item().Key()))
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			hash.Write(binaryLen(v))
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(hash.Sum(nil)), n
}

func binaryLen(b []byte) []byte {
	return append([]byte{byte(len(b) >> 24), byte(len(b) >> 16), byte(len(b) >> 8), byte(len(b))}, b...)
}

// replay opens a fresh FSM on its own store, restores base and applies
// the log, with a wall clock that fails the test when read.
func replay(t *testing.T, base []byte, log [][]byte) *FSM {
	t.Helper()
	db, err := kv.Open("", kv.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	var applying bool
	clock := func() time.Time {
		if applying {
			t.Errorf("the FSM read the wall clock while applying")
		}
		return time.Unix(0, 0)
	}
	f, err := OpenFSM(context.Background(), db, FSMOptions{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	if err := f.Restore(bytes.NewReader(base)); err != nil {
		t.Fatal(err)
	}
	applying = true
	defer func() { applying = false }()
	for i, e := range log {
		if _, err := f.Apply(e); err != nil && errors.Is(err, ErrCommand) {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	return f
}

func TestReplayIsDeterministic(t *testing.T) {
	r := openRecorded(t)
	runScenario(t, r.h)
	if len(r.log) < 15 {
		t.Fatalf("the scenario made %d entries; want a realistic log", len(r.log))
	}
	if r.h.metrics.twinGC.Load() == 0 {
		t.Fatal("the scenario collected no twin garbage; want a log with gcTwins")
	}
	want, n := digestState(t, r.h.db)
	for i := range 2 {
		f := replay(t, r.base, r.log)
		if got, m := digestState(t, f.db); got != want {
			t.Fatalf("replay %d: state %s (%d keys), the hub's %s (%d keys)", i, got, m, want, n)
		}
	}
}

// restAnswers is what the service API answers about the scenario's state.
func restAnswers(t *testing.T, h *Hub) map[string]string {
	t.Helper()
	srv := httptest.NewServer(h.Handler())
	defer srv.Close()
	out := map[string]string{}
	for _, p := range []string{"/devices", "/devices/dev1", "/devices/gw1/modules", "/twins/dev1", "/twins/dev2",
		"/twins/gw1/modules/$edgeAgent", "/messages/events?from=1&limit=100", "/devices/other"} {
		req, _ := http.NewRequest("GET", srv.URL+p, nil)
		req.Header.Set("Authorization", ownerToken())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out[p] = fmt.Sprintf("%d %s", resp.StatusCode, body)
	}
	return out
}

func TestSnapshotRestore(t *testing.T) {
	r := openRecorded(t)
	runScenario(t, r.h)
	var snap bytes.Buffer
	if err := r.h.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	fresh, err := Open(context.Background(), "", Options{HostName: "hub.test", OwnerKey: ownerKey, InMemory: true, Incarnation: DefaultIncarnation})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if _, err := fresh.PutDevice(context.Background(), identity.JSON{DeviceID: "dropped"}); err != nil {
		t.Fatal(err)
	}
	if err := fresh.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	want, n := digestState(t, r.h.db)
	if got, m := digestState(t, fresh.db); got != want {
		t.Fatalf("restored state %s (%d keys), want %s (%d keys)", got, m, want, n)
	}
	if _, err := fresh.Identity("dropped"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a device of the state before the restore is still there: %v", err)
	}
	a, b := restAnswers(t, r.h), restAnswers(t, fresh)
	for p := range a {
		if a[p] != b[p] {
			t.Errorf("GET %s: restored hub answers %s\nthe hub answers %s", p, b[p], a[p])
		}
	}
	// The restored hub goes on: the event log continues its seq, and a
	// frame it already holds is a duplicate.
	frame := protocol.Messages{Instance: "edge:gw2.a", Queue: "$upstream/pdefault", Msgs: []protocol.Message{
		{Seq: 5, ID: "m", Source: "devices/dev2", Body: []byte{3}, EnqueuedAt: 1000}, {Seq: 7, Source: "devices/dev2", Body: []byte("z")}}}
	ack, err := fresh.Messages(context.Background(), "gw2", frame)
	if err != nil || ack.Duplicates != 1 || ack.Appended != 1 || fresh.LastSeq() != r.h.LastSeq()+1 {
		t.Fatalf("after restore: %+v %v, last seq %d (snapshot's %d)", ack, err, fresh.LastSeq(), r.h.LastSeq())
	}
}

func TestRestoreRefusesBadSnapshots(t *testing.T) {
	r := openRecorded(t)
	runScenario(t, r.h)
	var snap bytes.Buffer
	if err := r.h.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	full := snap.Bytes()
	for name, b := range map[string][]byte{
		"empty":     nil,
		"not ours":  []byte("hello world\n"),
		"cut":       full[:len(full)/2],
		"no count":  full[:len(full)-1],
		"huge key":  append([]byte(snapshotMagic), 0xff, 0xff, 0xff, 0xff, 0x0f),
		"bad count": append(bytes.Clone(full[:len(full)-1]), full[len(full)-1]+1),
	} {
		f := replay(t, r.base, nil)
		if err := f.Restore(bytes.NewReader(b)); err == nil {
			t.Errorf("%s: restored", name)
		}
		if _, err := f.Apply(r.log[0]); err != nil { // the FSM stays usable
			t.Errorf("%s: apply after a failed restore: %v", name, err)
		}
	}
}

// The collision log's rate limit forgets instances once their hold-back
// is over: the map does not grow with every instance that ever collided.
func TestCollisionLogForgets(t *testing.T) {
	f := memFSM(t)
	collide := func(inst string, at int64) {
		f.at.Store(at)
		f.logCollision(appendEvents{Edge: "gw1", Frame: protocol.Messages{Instance: inst, Queue: "q"}}, batchPlan{collisions: 1, firstCollision: 1})
	}
	collide("edge:gw1.a", 0)
	collide("edge:gw1.b", collisionLogEvery/2)
	if len(f.collisionLogged) != 2 {
		t.Fatalf("after two collisions within the window: %v, want both held back", f.collisionLogged)
	}
	collide("edge:gw1.c", collisionLogEvery+1)
	if _, ok := f.collisionLogged["edge:gw1.a"]; ok || len(f.collisionLogged) != 2 {
		t.Errorf("after a's window passed: %v, want b and c only", f.collisionLogged)
	}
}

// FuzzRestore: Restore reads any bytes without panicking or allocating
// what a length claims before the bytes are there, and the FSM stays usable.
func FuzzRestore(f *testing.F) {
	rec := func(b []byte) []byte { return append(binary.AppendUvarint(nil, uint64(len(b))), b...) }
	valid := append([]byte(snapshotMagic), rec([]byte("k"))...)
	valid = append(append(valid, rec([]byte("v"))...), 0, 1)
	f.Add(valid)
	f.Add([]byte(snapshotMagic))
	f.Add(append([]byte(snapshotMagic), 1, 'k', 0xff, 0xff, 0xff, 0xff, 0x03))
	db, err := kv.Open("", kv.Options{InMemory: true})
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	fsm, err := OpenFSM(context.Background(), db, FSMOptions{})
	if err != nil {
		f.Fatal(err)
	}
	defer fsm.Close()
	f.Fuzz(func(t *testing.T, data []byte) {
		restoreErr := fsm.Restore(bytes.NewReader(data))
		if bytes.Equal(data, valid) && restoreErr != nil {
			t.Fatalf("restore of a valid snapshot: %v", restoreErr)
		}
		entry, _ := encodeCommand(gcTwins{}, 1)
		if _, err := fsm.Apply(entry); err != nil {
			t.Fatalf("apply after a restore (%v): %v", restoreErr, err)
		}
	})
}

// TestRestoreWhileServing: a cluster node installs a snapshot while its
// servers answer (a follower's /metrics and stale reads, a leader that
// just stepped down): the readers never race the restore (run with -race).
func TestRestoreWhileServing(t *testing.T) {
	f := newFixture(t)
	var snap bytes.Buffer
	if err := f.h.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, _ = f.h.Identity("gw1")
			_ = f.h.Devices()
			_ = f.h.LastSeq()
			_, _ = f.h.Twin("dev1")
			req, _ := http.NewRequest("GET", f.srv.URL+"/metrics", nil)
			req.Header.Set("Authorization", ownerToken())
			if resp, err := http.DefaultClient.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
	for range 5 {
		if err := f.h.FSM().RestoreFrom(bytes.NewReader(snap.Bytes())); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	<-done
	if _, err := f.h.Identity("gw1"); err != nil {
		t.Fatalf("after the restores: %v", err)
	}
}

// An entry applied again after a crash between its write and the applied
// index queues its cloud-to-device message once; a later command with the
// same message id (IoT Hub allows it) queues another.
func TestSendC2DAppliedAgainQueuesOnce(t *testing.T) {
	f := memFSM(t)
	send := func(at int64) []byte {
		e, err := encodeCommand(sendC2D{Device: "dev1", Msg: queue.Message{ID: "c1", Body: []byte("hi")}}, at)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	first := send(1_700_000_000_000)
	for range 2 { // the same entry twice: a replay
		if _, err := f.Apply(first); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.Apply(send(1_700_000_001_000)); err != nil {
		t.Fatal(err)
	}
	q, ok := f.queues.Lookup("c2d/dev1")
	if !ok {
		t.Fatal("no C2D queue")
	}
	if n := q.Stats().Depth; n != 2 {
		t.Fatalf("%d messages queued, want 2 (the replayed entry once, the later send once)", n)
	}
}

// appendEvents carries the proposer's digests (version 2) or none (as a
// version 1 entry): the events and their de-duplication are the same;
// digests that do not fit the frame are refused and change nothing.
func TestAppendEventsDigestsFromTheProposer(t *testing.T) {
	frame := protocol.Messages{Instance: "edge:gw1.a1", Queue: "$upstream/pdefault", Msgs: []protocol.Message{
		{Seq: 1, ID: "m1", Source: "devices/dev1", Body: []byte("one")}, {Seq: 2, ID: "m2", Source: "devices/dev1", Body: []byte("two")}}}
	with, err := appendEvents{Edge: "gw1", Frame: frame}.withDigests()
	if err != nil {
		t.Fatal(err)
	}
	logs := map[string]string{}
	for name, cmd := range map[string]appendEvents{"with": with, "without": {Edge: "gw1", Frame: frame}} {
		fx := newFixture(t)
		for range 2 { // the second time: duplicates
			entry, err := encodeCommand(cmd, 1_700_000_000_000)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fx.h.fsm.Apply(entry); err != nil {
				t.Fatalf("%s digests: %v", name, err)
			}
		}
		evs, err := fx.h.Events(1, 10)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(evs)
		logs[name] = string(b)
	}
	if logs["with"] != logs["without"] || strings.Count(logs["with"], `"Seq"`) != 2 {
		t.Errorf("the proposer's digests and the FSM's own give different logs:\n%s\n%s", logs["with"], logs["without"])
	}
	bad := with
	bad.Digests = bad.Digests[:digestSize]
	fx := newFixture(t)
	entry, _ := encodeCommand(bad, 1_700_000_000_000)
	if _, err := fx.h.fsm.Apply(entry); !errors.Is(err, ErrInvalid) {
		t.Errorf("one digest for two messages: %v, want ErrInvalid", err)
	}
	if last := fx.h.LastSeq(); last != 0 {
		t.Errorf("a refused frame stored %d events", last)
	}
}

// memFSM opens a state machine on an in-memory store, closed with the test.
func memFSM(t *testing.T) *FSM {
	t.Helper()
	db, err := kv.Open("", kv.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	f, err := OpenFSM(context.Background(), db, FSMOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close(); _ = db.Close() })
	return f
}
