package hub

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"pgregory.net/rapid"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// detNode is an FSM on its own on-disk store, which the test closes and
// re-opens, or replaces by a fresh one restored from a snapshot.
type detNode struct {
	t   *testing.T
	dir string
	db  *kv.DB
	f   *FSM
	// applying is set while Apply runs (the wall clock must not be read).
	applying bool
}

func openDetNode(t *testing.T, dir string) *detNode {
	t.Helper()
	n := &detNode{t: t, dir: dir}
	n.open()
	return n
}

// wallClock fails the test when the FSM reads it while applying.
func (n *detNode) wallClock() time.Time {
	if n.applying {
		n.t.Errorf("the FSM read the wall clock while applying")
	}
	return time.Unix(0, 0)
}

func (n *detNode) open() {
	n.t.Helper()
	var err error
	if n.db, err = kv.Open(n.dir, kv.Options{Durability: kv.Process}); err != nil {
		n.t.Fatal(err)
	}
	if n.f, err = OpenFSM(context.Background(), n.db, FSMOptions{Now: n.wallClock}); err != nil {
		n.t.Fatal(err)
	}
}

func (n *detNode) close() {
	n.t.Helper()
	if err := n.f.Close(); err != nil {
		n.t.Fatal(err)
	}
	if err := n.db.Close(); err != nil {
		n.t.Fatal(err)
	}
}

func (n *detNode) reopen() {
	n.t.Helper()
	n.close()
	n.open()
}

func (n *detNode) snapshot() []byte {
	n.t.Helper()
	var buf bytes.Buffer
	if err := n.f.Snapshot(&buf); err != nil {
		n.t.Fatal(err)
	}
	return buf.Bytes()
}

// moveTo restores n's snapshot into a fresh FSM in dir and continues there.
func (n *detNode) moveTo(dir string) {
	n.t.Helper()
	snap := n.snapshot()
	n.close()
	n.dir = dir
	n.open()
	if err := n.f.Restore(bytes.NewReader(snap)); err != nil {
		n.t.Fatal(err)
	}
}

// answer is what one Apply answered, comparable across FSMs.
func (n *detNode) answer(entry []byte) string {
	n.applying = true
	res, err := n.f.Apply(entry)
	n.applying = false
	return fmt.Sprintf("%#v / %v", res, err)
}

// detModel generates commands the way the hub's servers propose them: the
// identities, keys and message ids are decided here, and the time of each
// command goes forward, stalls and steps back (a new leader's clock).
type detModel struct {
	at      int64 // the last command's time
	frames  []protocol.Messages
	edgeSeq map[string]uint64 // instance → last edge seq sent
	edge    *twin.Store       // gw1's twin replica, for mergeTwins
	child   *twin.Store       // gw2's (a child edge of gw1), whose writes gw1 relays
	edgeAt  int64
	// vv is the hub's twin version vector as the edge last heard it (the
	// A side's: the proposer's view).
	c2dSeq  uint64
	lastAck *ackPull
}

var (
	detGW   = identity.Identity{DeviceID: "gw1", Status: identity.Enabled, Edge: true, DeviceScope: "ms-azure-iot-edge://gw1-1", Generation: "g-gw1", Auth: detAuth}
	detAuth = identity.Auth{Type: identity.AuthSAS, PrimaryKey: bytes.Repeat([]byte{1}, 32), SecondaryKey: bytes.Repeat([]byte{2}, 32)}
	detDevs = []string{"dev1", "dev2", "dev3"}
	// A child edge of gw1 and its leaf (nested edges): gw1's scope holds
	// them, their messages come with an edge path.
	detGW2    = identity.Identity{DeviceID: "gw2", Status: identity.Enabled, Edge: true, DeviceScope: "ms-azure-iot-edge://gw2-1", Generation: "g-gw2", Auth: detAuth, ParentScopes: []string{detGW.DeviceScope}}
	detNested = []string{"gw2", "dev4"}
	detPaths  = []string{"a", "b", "c"}
)

func detDevice(rt *rapid.T, name string) identity.Identity {
	id := identity.Identity{DeviceID: name, Status: identity.Enabled, Auth: detAuth,
		Generation: "g-" + name + "-" + rapid.SampledFrom([]string{"1", "2"}).Draw(rt, "gen")}
	if name != "dev3" { // dev3 is behind no edge
		id.ParentScopes = []string{detGW.DeviceScope}
	}
	return id
}

func (m *detModel) nextAt(rt *rapid.T) int64 {
	switch rapid.IntRange(0, 9).Draw(rt, "clock") {
	case 0:
		// stall
	case 1, 2:
		m.at -= rapid.Int64Range(1, 3000).Draw(rt, "back")
	default:
		m.at += rapid.Int64Range(1, 4000).Draw(rt, "forward")
	}
	return m.at
}

func detJSON(rt *rapid.T, label string) json.RawMessage {
	doc := map[string]any{}
	for _, p := range detPaths {
		switch rapid.IntRange(0, 4).Draw(rt, label+p) {
		case 1:
			doc[p] = rapid.IntRange(0, 9).Draw(rt, label+p+"v")
		case 2:
			doc[p] = nil
		case 3:
			doc[p] = map[string]any{"x": rapid.IntRange(0, 9).Draw(rt, label+p+"x"), "y": nil}
		case 4: // over the section's limit: refused after it was stamped
			big := map[string]any{}
			for i := range 9 {
				big[fmt.Sprint(i)] = strings.Repeat("z", 4000)
			}
			doc[p] = big
		}
	}
	b, _ := json.Marshal(doc)
	return b
}

// command draws the next command; a is the proposer's FSM (its twin
// version vector goes into ackPull, as the edge would report it).
func (m *detModel) command(rt *rapid.T, a *FSM) any {
	switch rapid.IntRange(0, 11).Draw(rt, "command") {
	case 0:
		ids := []identity.Identity{detGW}
		for _, d := range subsetOf(rt, detDevs, "devices") {
			ids = append(ids, detDevice(rt, d))
		}
		for _, d := range subsetOf(rt, detNested, "nested") {
			if d == "gw2" {
				ids = append(ids, detGW2)
				continue
			}
			dev := detDevice(rt, d)
			dev.ParentScopes = []string{detGW2.DeviceScope}
			ids = append(ids, dev)
		}
		return putIdentities{IDs: ids}
	case 1:
		return deleteIdentities{IDs: subsetOf(rt, append(append([]string{"gw1/sim"}, detDevs...), detNested...), "delete")}
	case 2:
		return writeTwin{ID: rapid.SampledFrom(append([]string{"gw1"}, detDevs...)).Draw(rt, "twin"),
			Tags: detJSON(rt, "tags"), Desired: detJSON(rt, "desired"), Replace: rapid.Bool().Draw(rt, "replace")}
	case 3:
		sim := identity.Identity{DeviceID: "gw1", ModuleID: "sim", Status: identity.Enabled, Generation: "g-sim", Auth: detAuth}
		return applyConfiguration{Device: "gw1", New: []identity.Identity{sim}, Desired: map[string]json.RawMessage{
			"$edgeAgent": []byte(`{"modules":{"sim":{}}}`), "sim": detJSON(rt, "module")}}
	case 4:
		m.c2dSeq++
		msg := queue.Message{ID: fmt.Sprintf("c2d-%d", m.c2dSeq), Body: []byte("hi"),
			TTL: time.Duration(rapid.IntRange(0, 8).Draw(rt, "ttl")) * time.Second}
		return sendC2D{Device: rapid.SampledFrom(detDevs).Draw(rt, "to"), Msg: msg}
	case 5:
		return m.appendEvents(rt)
	case 6:
		return m.mergeTwins(rt)
	case 7:
		if m.lastAck != nil && rapid.Bool().Draw(rt, "same pull") { // a retried pull
			return *m.lastAck
		}
		c2d := map[string]uint64{}
		for _, d := range subsetOf(rt, detDevs, "acked") {
			c2d[d] = rapid.Uint64Range(0, m.c2dSeq).Draw(rt, "cursor")
		}
		// The edge reports what it holds: the hub's writes (as far as the
		// proposer has them) and its own, some not merged at the hub yet.
		vv := a.twins.VV()
		if rapid.Bool().Draw(rt, "edge ahead") {
			vv.Merge(m.edge.VV())
		}
		if rapid.Bool().Draw(rt, "child ahead") { // gw1 holds gw2's writes it has not relayed yet
			vv.Merge(m.child.VV())
		}
		m.lastAck = &ackPull{Edge: "gw1", Instance: string(m.edge.Replica()), VV: vv, C2D: c2d}
		return *m.lastAck
	case 8:
		return expireEvents{Before: m.at - rapid.Int64Range(0, 20000).Draw(rt, "age"), Max: rapid.IntRange(1, 5).Draw(rt, "max")}
	case 9:
		return gcTwins{IDs: subsetOf(rt, append(append([]string{"gw1", "gw1/sim", "gw1/$edgeAgent"}, detDevs...), detNested...), "gc")}
	default:
		return extraCommand(rt, m)
	}
}

func (m *detModel) appendEvents(rt *rapid.T) any {
	if len(m.frames) > 0 && rapid.IntRange(0, 3).Draw(rt, "retry") == 0 {
		return appendEvents{Edge: "gw1", Frame: rapid.SampledFrom(m.frames).Draw(rt, "frame")}
	}
	inst := rapid.SampledFrom([]string{"edge:gw1.a", "edge:gw1.b"}).Draw(rt, "instance")
	f := protocol.Messages{Instance: inst, Queue: "$upstream/pdefault"}
	for range rapid.IntRange(1, 3).Draw(rt, "msgs") {
		m.edgeSeq[inst]++
		src := rapid.SampledFrom([]string{"devices/dev1", "devices/dev3", "devices/gw1/modules/sim", "devices/dev4"}).Draw(rt, "source")
		var path []string // right for dev4 (through gw2), wrong for the others
		if rapid.Bool().Draw(rt, "edge path") {
			path = []string{"gw2"}
		}
		f.Msgs = append(f.Msgs, protocol.Message{Seq: m.edgeSeq[inst], ID: "m", Source: src,
			Body: []byte{byte(rapid.IntRange(0, 3).Draw(rt, "body"))}, EnqueuedAt: m.at, EdgePath: path})
	}
	m.frames = append(m.frames, f)
	return appendEvents{Edge: "gw1", Frame: f}
}

// mergeTwins writes reported properties on gw1's replica, or on its child
// gw2's (which gw1 relays, as a parent edge does), and sends a delta since
// nothing or since a random earlier point (a duplicate).
func (m *detModel) mergeTwins(rt *rapid.T) any {
	ctx := context.Background()
	m.edgeAt = max(m.edgeAt+1, m.at)
	r, ids := m.edge, []string{"dev1", "dev2", "gw1/sim"}
	if rapid.IntRange(0, 2).Draw(rt, "writer") == 0 {
		r, ids = m.child, detNested
	}
	id := rapid.SampledFrom(ids).Draw(rt, "reported")
	s, err := r.BeginSession()
	if err != nil {
		rt.Fatal(err)
	}
	if _, err := r.PatchReported(ctx, id, s, detJSON(rt, "reported")); err != nil && !errors.Is(err, twin.ErrTooLarge) && !errors.Is(err, twin.ErrInvalid) {
		rt.Fatal(err)
	}
	from := crdt.VV{}
	if self := r.Replica(); rapid.Bool().Draw(rt, "incremental") {
		from[self] = rapid.Uint64Range(0, r.VV()[self]).Draw(rt, "since")
	}
	b, _, err := r.Delta(from, 100)
	if err != nil {
		rt.Fatal(err)
	}
	return mergeTwins{Edge: "gw1", Batch: b}
}

// TestFSMIsDeterministic applies random command sequences to FSM a
// straight through and to FSM b, which is closed and re-opened, or
// replaced by a fresh FSM restored from its snapshot, at random points:
// every answer must be the same, and so must the final state, byte for
// byte.
func TestFSMIsDeterministic(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		a, b := openDetNode(t, t.TempDir()), openDetNode(t, t.TempDir())
		defer a.close()
		defer b.close()
		edb, err := kv.Open("", kv.Options{InMemory: true})
		if err != nil {
			t.Fatal(err)
		}
		defer edb.Close()
		start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixMilli()
		m := &detModel{at: start, edgeSeq: map[string]uint64{}, edgeAt: start}
		if m.edge, err = twin.Open(ctx, edb, twin.Options{Role: twin.Edge, Name: "gw1", Now: func() int64 { return m.edgeAt }}); err != nil {
			t.Fatal(err)
		}
		cdb, err := kv.Open("", kv.Options{InMemory: true})
		if err != nil {
			t.Fatal(err)
		}
		defer cdb.Close()
		if m.child, err = twin.Open(ctx, cdb, twin.Options{Role: twin.Edge, Name: "gw2", Now: func() int64 { return m.edgeAt }}); err != nil {
			t.Fatal(err)
		}
		for _, c := range []any{putIdentities{IDs: []identity.Identity{detGW}}, m.command(rt, a.f)} {
			m.step(rt, a, b, c)
		}
		for i := range rapid.IntRange(1, 60).Draw(rt, "steps") {
			m.step(rt, a, b, m.command(rt, a.f))
			switch rapid.IntRange(0, 9).Draw(rt, "b") {
			case 0:
				b.reopen()
			case 1:
				b.moveTo(t.TempDir())
			}
			_ = i
		}
		if sa, sb := a.snapshot(), b.snapshot(); !bytes.Equal(sa, sb) {
			rt.Fatalf("the states differ:\n%s", diffSnapshots(t, sa, sb))
		}
	})
}

func (m *detModel) step(rt *rapid.T, a, b *detNode, cmd any) {
	entry, err := encodeCommand(cmd, m.nextAt(rt))
	if err != nil {
		rt.Fatal(err)
	}
	if ra, rb := a.answer(entry), b.answer(entry); ra != rb {
		rt.Fatalf("%T at %d answered\n  %s straight through,\n  %s re-opened/restored", cmd, m.at, ra, rb)
	}
}

// diffSnapshots names the keys whose values differ between two snapshots.
func diffSnapshots(t *testing.T, a, b []byte) string {
	ka, kb := snapshotKeys(t, a), snapshotKeys(t, b)
	var out bytes.Buffer
	for k, v := range ka {
		if w, ok := kb[k]; !ok {
			fmt.Fprintf(&out, "  %q only straight through\n", k)
		} else if !bytes.Equal(v, w) {
			fmt.Fprintf(&out, "  %q: %x straight through, %x re-opened\n", k, v, w)
		}
	}
	for k := range kb {
		if _, ok := ka[k]; !ok {
			fmt.Fprintf(&out, "  %q only re-opened/restored\n", k)
		}
	}
	return out.String()
}

func snapshotKeys(t *testing.T, snap []byte) map[string][]byte {
	db, err := kv.Open("", kv.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	f := &FSM{db: db}
	if err := f.load(bufioReader(snap)); err != nil {
		t.Fatal(err)
	}
	keys := map[string][]byte{}
	for k, v := range dumpKV(t, db) {
		keys[k] = v
	}
	return keys
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

func dumpKV(t *testing.T, db *kv.DB) map[string][]byte {
	out := map[string][]byte{}
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out[string(it.Item().KeyCopy(nil))] = v
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// extraCommand is a commit of message routing cursors, the sweep of
// expired cloud-to-device messages or a job command.
func extraCommand(rt *rapid.T, m *detModel) any {
	if rapid.IntRange(0, 3).Draw(rt, "extra cursors") == 0 {
		cursors := map[string]uint64{}
		for _, e := range subsetOf(rt, []string{"js", "k", "hook"}, "endpoints") {
			cursors[e] = rapid.Uint64Range(0, 40).Draw(rt, "cursor "+e)
		}
		return setRouteCursors{Cursors: cursors}
	}
	if rapid.IntRange(0, 2).Draw(rt, "extra") == 0 {
		return expireC2D{Max: rapid.IntRange(1, 4).Draw(rt, "expire")}
	}
	return detJobCommand(rt, m)
}

// detJobCommand draws a job command: jobs created, their devices listed,
// started and done in any order (the state machine keeps what applies).
func detJobCommand(rt *rapid.T, m *detModel) any {
	id := rapid.SampledFrom([]string{"j1", "j2"}).Draw(rt, "job")
	switch rapid.IntRange(0, 3).Draw(rt, "job command") {
	case 0:
		c := putJob{ID: id, Type: jobUpdateTwin, Condition: "tags.a = 1", Twin: []byte(`{"tags":{"b":1}}`),
			Start: m.at + rapid.Int64Range(-1000, 1000).Draw(rt, "start")}
		if rapid.Bool().Draw(rt, "method job") {
			c.Type, c.Twin, c.Method = jobDeviceMethod, nil, &jobMethod{Name: "m", ResponseTimeout: 5}
		}
		return c
	case 1:
		c := jobProgress{ID: id, Status: rapid.SampledFrom([]string{"", statusRunning, statusCompleted, statusFailed}).Draw(rt, "job status")}
		for _, d := range subsetOf(rt, detDevs, "job devices") {
			st := rapid.SampledFrom([]string{statusPending, statusRunning, statusCompleted, statusFailed}).Draw(rt, "device status")
			c.Devices = append(c.Devices, deviceResult{Device: d, Status: st, MethodStatus: 200, Payload: []byte(`1`)})
		}
		return c
	case 2:
		return cancelJob{ID: id}
	default:
		return expireJobs{Before: m.at - rapid.Int64Range(0, 20000).Draw(rt, "job age"), Max: rapid.IntRange(1, 3).Draw(rt, "job max")}
	}
}

// subsetOf draws a subset of xs, in their order.
func subsetOf(rt *rapid.T, xs []string, label string) []string {
	var out []string
	for _, x := range xs {
		if rapid.Bool().Draw(rt, label+" "+x) {
			out = append(out, x)
		}
	}
	return out
}

// detRig is two deterministic FSM nodes fed the same commands (b may be
// re-opened in between) and an edge's twin store whose reported patches
// make the batches to merge.
type detRig struct {
	a, b *detNode
	edge *twin.Store
	at   int64
}

func newDetRig(t *testing.T, edgeName string) *detRig {
	t.Helper()
	r := &detRig{a: openDetNode(t, t.TempDir()), b: openDetNode(t, t.TempDir())}
	t.Cleanup(r.a.close)
	t.Cleanup(r.b.close)
	edb, err := kv.Open("", kv.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { edb.Close() })
	r.at = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixMilli()
	if r.edge, err = twin.Open(context.Background(), edb, twin.Options{Role: twin.Edge, Name: edgeName, Now: func() int64 { return r.at }}); err != nil {
		t.Fatal(err)
	}
	return r
}

// apply hands cmd to both nodes, 10 ms after the last, and wants the same answer.
func (r *detRig) apply(t *testing.T, cmd any) {
	t.Helper()
	r.at += 10
	entry, err := encodeCommand(cmd, r.at)
	if err != nil {
		t.Fatal(err)
	}
	if ra, rb := r.a.answer(entry), r.b.answer(entry); ra != rb {
		t.Fatalf("%T answered %s straight through, %s re-opened", cmd, ra, rb)
	}
}

// report patches id's reported properties at the edge and returns all it wrote.
func (r *detRig) report(t *testing.T, id, doc string) twin.Batch {
	t.Helper()
	s, _ := r.edge.BeginSession()
	if _, err := r.edge.PatchReported(context.Background(), id, s, []byte(doc)); err != nil {
		t.Fatal(err)
	}
	batch, _, err := r.edge.Delta(crdt.VV{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	return batch
}

// TestFSMAckAfterReopen: an edge's ack that GC promoted in memory must not
// make the next identical ack write differently on a re-opened FSM.
func TestFSMAckAfterReopen(t *testing.T) {
	r := newDetRig(t, "gw1")
	a, b, edge := r.a, r.b, r.edge
	apply := func(cmd any) { t.Helper(); r.apply(t, cmd) }
	report := func(doc string) twin.Batch { t.Helper(); return r.report(t, "dev1", doc) }
	dev1 := identity.Identity{DeviceID: "dev1", Status: identity.Enabled, Auth: detAuth, Generation: "g", ParentScopes: []string{detGW.DeviceScope}}
	apply(putIdentities{IDs: []identity.Identity{detGW, dev1}})
	apply(writeTwin{ID: "dev1", Desired: []byte(`{"x":{"y":1}}`)})
	apply(writeTwin{ID: "dev1", Desired: []byte(`{"x":null}`)}) // a tombstone for GC
	apply(mergeTwins{Edge: "gw1", Batch: report(`{"t":1}`)})
	late := report(`{"t":null}`) // the edge's second write, not merged yet
	vv := a.f.twins.VV()
	vv.Merge(edge.VV())
	ack := ackPull{Edge: "gw1", Instance: string(edge.Replica()), VV: vv}
	apply(ack) // not usable yet: the hub lacks the edge's second write
	apply(mergeTwins{Edge: "gw1", Batch: late})
	apply(gcTwins{IDs: []string{"dev1"}})
	b.reopen()
	apply(ack) // a retried pull
	if sa, sb := a.snapshot(), b.snapshot(); !bytes.Equal(sa, sb) {
		t.Fatalf("the states differ:\n%s", diffSnapshots(t, sa, sb))
	}
}

// TestFSMNestedGC: a twin below a child edge is collected once the top
// edge's ack covers its tombstones, the same way on an FSM re-opened and
// restored in between (the tree is read from the FSM's own state).
func TestFSMNestedGC(t *testing.T) {
	r := newDetRig(t, "gw2")
	a, b, child := r.a, r.b, r.edge
	apply := func(cmd any) { t.Helper(); r.apply(t, cmd) }
	report := func(doc string) twin.Batch { t.Helper(); return r.report(t, "dev4", doc) }
	dev4 := identity.Identity{DeviceID: "dev4", Status: identity.Enabled, Auth: detAuth, Generation: "g", ParentScopes: []string{detGW2.DeviceScope}}
	apply(putIdentities{IDs: []identity.Identity{detGW, detGW2, dev4}})
	report(`{"fw":{"v":1}}`)
	apply(mergeTwins{Edge: "gw1", Batch: report(`{"fw":null}`)})
	b.reopen()
	apply(ackPull{Edge: "gw2", Instance: string(child.Replica()), VV: a.f.twins.VV()}) // not a member: gw2 never pulls from the hub
	apply(gcTwins{IDs: []string{"dev4"}})
	for _, n := range []*detNode{a, b} {
		if k, _ := n.f.twins.Tombstones("dev4"); k == 0 {
			t.Fatalf("dev4's tombstones collected on the ack of gw2, which is not its member")
		}
	}
	b.moveTo(t.TempDir())
	apply(ackPull{Edge: "gw1", Instance: "edge:gw1.a", VV: a.f.twins.VV()})
	apply(gcTwins{IDs: []string{"dev4"}})
	for _, n := range []*detNode{a, b} {
		if k, _ := n.f.twins.Tombstones("dev4"); k != 0 {
			t.Fatalf("dev4 keeps %d tombstones after gw1, the top edge, acknowledged them", k)
		}
	}
	if sa, sb := a.snapshot(), b.snapshot(); !bytes.Equal(sa, sb) {
		t.Fatalf("the states differ:\n%s", diffSnapshots(t, sa, sb))
	}
}
