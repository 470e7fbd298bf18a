package broker

import (
	"context"
	"log/slog"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/store/disk"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/mqttstate"
)

func qos1(topic string, id uint16) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: topic, PacketID: id,
		Payload: []byte("x")}
}

// mochi v2.7.9 rolls a message back from a client's inflight map without
// OnQosDropped when the client's outbound channel is full; the record of
// that message must not outlive it (it would be resent after a restart).
func TestPersistPublishDroppedDeletesRolledBack(t *testing.T) {
	e := openEdge(t, t.TempDir())
	p := newPersist(e.b, e.db)
	cl := e.b.srv.NewClient(nil, "tcp", "slow", false)
	cl.Properties.ProtocolVersion = 4 // clean session false: persistent
	for _, id := range []uint16{7, 8} {
		pk := qos1("test/x", id)
		cl.State.Inflight.Set(pk)
		p.OnQosPublish(cl, pk, 0, 0)
	}
	if n := len(e.state().Inflight); n != 2 {
		t.Fatalf("%d messages stored, want 2", n)
	}
	cl.State.Inflight.Delete(7) // the rollback, without a hook
	p.OnPublishDropped(cl, qos1("test/x", 99))
	st := e.state()
	if len(st.Inflight) != 1 || st.Inflight[0].PacketID != 8 {
		t.Fatalf("stored after the rollback: %+v; want only packet 8", st.Inflight)
	}
}

// On a full disk (kv's Space gate) a record is not written: the failure
// is counted, and a retained message that cannot be replaced is deleted
// rather than left to come back, older, after a restart.
func TestPersistFullDisk(t *testing.T) {
	dir := t.TempDir()
	db, err := kv.Open(dir+"/db", kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	old, err := mqttstate.PutRetained(mqttstate.Message{Topic: "test/r", Retain: true, Payload: []byte("old")})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Commit(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	db.Close()
	sp, err := disk.Statfs(dir)
	if err != nil {
		t.Fatal(err)
	}
	mon, err := disk.Open(disk.Options{Dir: dir, Store: dir + "/db", Allowance: sp.Avail + 1<<40})
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	if db, err = kv.Open(dir+"/db", kv.Options{Space: mon}); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	b := &Broker{opts: Options{Now: time.Now}, log: slog.New(slog.DiscardHandler),
		srv: mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})}
	p := newPersist(b, db)
	cl := b.srv.NewClient(nil, "tcp", "c", false)
	cl.Properties.ProtocolVersion = 4
	pk := qos1("test/r", 1)
	pk.FixedHeader.Retain = true
	p.OnRetainMessage(cl, pk, 1)
	p.OnQosPublish(cl, qos1("test/q", 2), 0, 0)
	done := make(chan error, 1)
	db.CommitAsync(nil, func(err error) { done <- err })
	<-done
	st, err := mqttstate.Load(db)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Retained)+len(st.Inflight) != 0 {
		t.Fatalf("stored on a full disk: %+v", st)
	}
	if n := b.stats.StateFailed.Load(); n != 2 {
		t.Fatalf("StateFailed = %d, want 2", n)
	}
}

// A QoS 1 free-topic PUBACK waits for the session state its fan-out wrote
// (here a message queued for an offline persistent subscriber): with the
// store's writer held it stays unacknowledged, and comes once the writer
// moves on. A publish whose fan-out wrote nothing does not wait.
func TestFreeTopicPubackWaitsForTheStateItsFanOutWrote(t *testing.T) {
	e := openEdge(t, t.TempDir())
	sub := v3(t, e.addr, "offline-sub", false, nil)
	waitTok(t, sub.Subscribe("test/q", 1, nil))
	sub.Disconnect(0)
	pub := v3(t, e.addr, "pub", true, nil)
	release, held := make(chan struct{}), make(chan struct{})
	e.db.CommitAsync(nil, func(error) { close(held); <-release }) // holds the writer goroutine
	<-held
	// Nobody subscribes to test/none: nothing to store, the PUBACK comes.
	if tok := pub.Publish("test/none", 1, false, "x"); !tok.WaitTimeout(5 * time.Second) {
		close(release)
		t.Fatal("no PUBACK for a publish whose fan-out wrote nothing")
	}
	tok := pub.Publish("test/q", 1, false, "queued")
	// The correct broker cannot acknowledge while the writer is held, so
	// this wait never flakes; a PUBACK without the barrier comes within it.
	if tok.WaitTimeout(300 * time.Millisecond) {
		close(release)
		t.Fatal("PUBACK before the message queued for the offline subscriber was durable")
	}
	close(release)
	waitTok(t, tok)
}

// A clean connection that takes a live persistent session over ends it in
// the store too: after a restart nothing of the old session comes back.
func TestPersistCleanTakeoverEndsTheOldSession(t *testing.T) {
	e := openEdge(t, t.TempDir())
	old := v3(t, e.addr, "c1", false, nil)
	waitTok(t, old.Subscribe("test/old", 1, nil))
	clean := v3(t, e.addr, "c1", true, nil) // takes the live connection over
	waitFor(t, "the takeover", func() bool { return !old.IsConnectionOpen() })
	clean.Disconnect(0)
	waitFor(t, "the old session's records gone", func() bool {
		st := e.state()
		return len(st.Subscriptions) == 0 && len(st.Clients) == 0
	})
	e = e.restart()
	in := newInbox()
	v3(t, e.addr, "c1", false, in) // back to a session: it must have no subscription
	pub := v3(t, e.addr, "pub", true, nil)
	publish3(t, pub, "test/old", "stale", false)
	publish3(t, pub, "test/other", "x", false)
	time.Sleep(300 * time.Millisecond)
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(in.got) != 0 {
		t.Fatalf("the old session's subscription came back: got %q", in.got)
	}
}
