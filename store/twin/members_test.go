package twin

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/crdt"
)

// acks exchanges version vectors as the link does: the edge learns the
// hub's (member "hub"), the hub the edge's (member "gw1").
func acks(t interface {
	Helper()
	Fatal(...any)
}, edge, hub *Store) {
	t.Helper()
	if err := edge.Ack(ctx, "hub", hub.Replica(), hub.VV()); err != nil {
		t.Fatal(err)
	}
	if err := hub.Ack(ctx, "gw1", edge.Replica(), edge.VV()); err != nil {
		t.Fatal(err)
	}
}

func onlyEdge(string) []string { return []string{"gw1"} }
func onlyHub(string) []string  { return []string{"hub"} }

// A member's ack is used only once this replica holds everything the
// member had minted when it sent it; a newer ack does not push an older
// pending one out, so a member that writes all the time still lets GC on.
func TestAckWaitsUntilCaughtUp(t *testing.T) {
	clk := &clockT{ms: 1_750_000_000_000}
	edge := openStore(t, openDB(t, ""), Edge, "gw1", clk)
	hub := openStore(t, openDB(t, ""), Cloud, "hub", clk)
	hub.PatchDesired(ctx, "d", []byte(`{"a":1}`))
	hub.PatchDesired(ctx, "d", []byte(`{"a":null}`))
	syncPair(t, edge, hub, 100)
	sess, _ := edge.BeginSession()
	edge.PatchReported(ctx, "d", sess, []byte(`{"r":1}`)) // the hub lacks it
	if err := hub.Ack(ctx, "gw1", edge.Replica(), edge.VV()); err != nil {
		t.Fatal(err)
	}
	if n, _ := hub.GC(ctx, onlyEdge, 10); n != 0 {
		t.Fatalf("GC used an ack the hub has not caught up with: removed %d", n)
	}
	edge.PatchReported(ctx, "d", sess, []byte(`{"r":2}`))
	hub.Ack(ctx, "gw1", edge.Replica(), edge.VV()) // newer, not caught up either
	syncPair(t, edge, hub, 100)
	edge.PatchReported(ctx, "d", sess, []byte(`{"r":3}`))
	if n, _ := hub.GC(ctx, onlyEdge, 10); n == 0 {
		t.Fatal("the pending ack was caught up with, yet nothing was collected")
	}
	// Left: the clear that the set of r to 2 raised, which the ack in use
	// (sent before the edge wrote 2) does not cover.
	if n, _ := hub.Tombstones("d"); n != 1 {
		t.Fatalf("%d tombstones left, want 1", n)
	}
}

// Acks are persisted: after a restart GC goes on without a new ack, and a
// member never heard from (a new edge incarnation) holds everything back.
func TestAcksSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	clk := &clockT{ms: 1_750_000_000_000}
	db := openDB(t, dir)
	edge := openStore(t, openDB(t, ""), Edge, "gw1", clk)
	hub := openStore(t, db, Cloud, "hub", clk)
	hub.PatchDesired(ctx, "d", []byte(`{"a":1}`))
	syncPair(t, edge, hub, 100)
	acks(t, edge, hub)
	hub.PatchDesired(ctx, "d", []byte(`{"a":null}`))
	syncPair(t, edge, hub, 100)
	acks(t, edge, hub)
	db.Close()
	hub = openStore(t, openDB(t, dir), Cloud, "hub", clk)
	if n, err := hub.GC(ctx, onlyEdge, 10); err != nil || n == 0 {
		t.Fatalf("after a restart GC removed %d (err %v); the acks were lost", n, err)
	}
	hub.PatchDesired(ctx, "d", []byte(`{"b":1}`))
	hub.PatchDesired(ctx, "d", []byte(`{"b":null}`))
	other := openStore(t, openDB(t, ""), Edge, "gw1", clk) // a new incarnation of gw1
	syncPair(t, other, hub, 100)
	if err := hub.Ack(ctx, "gw1", other.Replica(), crdt.VV{}); err != nil {
		t.Fatal(err)
	}
	if n, _ := hub.GC(ctx, onlyEdge, 10); n != 0 {
		t.Fatalf("GC trusted the old incarnation's ack for the new one: removed %d", n)
	}
}

// Delete leaves no record of the twin; a new generation starts afresh.
func TestDeleteAndGeneration(t *testing.T) {
	clk := &clockT{ms: 1_750_000_000_000}
	edge := openStore(t, openDB(t, ""), Edge, "gw1", clk)
	if _, err := edge.EnsureGeneration(ctx, "d", "g1"); err != nil {
		t.Fatal(err)
	}
	sess, _ := edge.BeginSession()
	edge.PatchReported(ctx, "d", sess, []byte(`{"a":{"b":1},"c":2}`))
	edge.PatchReported(ctx, "d", sess, []byte(`{"a":null}`))
	if reset, err := edge.EnsureGeneration(ctx, "d", "g1"); err != nil || reset {
		t.Fatalf("same generation: reset %v, err %v", reset, err)
	}
	if reset, err := edge.EnsureGeneration(ctx, "d", "g2"); err != nil || !reset {
		t.Fatalf("new generation: reset %v, err %v", reset, err)
	}
	if v, _ := edge.Get("d"); len(v.Reported) != 0 {
		t.Fatalf("the new generation shows the old reported properties: %v", v.Reported)
	}
	if g, _ := edge.Generation("d"); g != "g2" {
		t.Fatalf("generation %q, want g2", g)
	}
	if n := countKeys(t, edge); n != 1 {
		t.Fatalf("%d records after the reset, want the meta only", n)
	}
	edge.PatchReported(ctx, "d", sess, []byte(`{"x":1}`))
	if ok, err := edge.Delete(ctx, "d"); !ok || err != nil {
		t.Fatalf("delete: %v %v", ok, err)
	}
	if n := countKeys(t, edge); n != 0 {
		t.Fatalf("%d records of the twin after Delete", n)
	}
	if _, err := edge.Get("d"); err == nil {
		t.Fatal("the twin is still there")
	}
	if st := edge.Stats(); st.Removed != 1 || st.Reset != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// countKeys counts twin and dot index records.
func countKeys(t *testing.T, s *Store) int {
	t.Helper()
	n, err := s.Records()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A replica with no other member (a standalone edge) collects at once.
func TestRunGCAlone(t *testing.T) {
	clk := &clockT{ms: 1_750_000_000_000}
	edge := openStore(t, openDB(t, ""), Edge, "gw1", clk)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- edge.RunGC(ctx, func(string) []string { return nil }) }()
	sess, _ := edge.BeginSession()
	for i := range 50 {
		edge.PatchReported(ctx, "d", sess, fmt.Appendf(nil, `{"k%d":1}`, i))
		edge.PatchReported(ctx, "d", sess, fmt.Appendf(nil, `{"k%d":null}`, i))
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if n, _ := edge.Tombstones("d"); n == 0 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("%d tombstones left", n)
		}
	}
	cancel()
	<-done
}

// A twin whose tombstones cannot go yet (here: a member that never
// acknowledged) is looked at once per change, not spun on until one comes.
func TestRunGCWaitsForChangeWhenNothingIsStable(t *testing.T) {
	clk := &clockT{ms: 1_750_000_000_000}
	edge := openStore(t, openDB(t, ""), Edge, "gw1", clk)
	ctx, cancel := context.WithCancel(ctx)
	var calls atomic.Int64
	members := func(string) []string { calls.Add(1); return []string{"hub"} }
	done := make(chan error)
	go func() { done <- edge.RunGC(ctx, members) }()
	sess, _ := edge.BeginSession()
	edge.PatchReported(ctx, "d", sess, []byte(`{"k":1}`))
	edge.PatchReported(ctx, "d", sess, []byte(`{"k":null}`))
	for deadline := time.Now().Add(10 * time.Second); calls.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("RunGC never looked at the twin")
		}
	}
	time.Sleep(200 * time.Millisecond)
	before := calls.Load()
	time.Sleep(200 * time.Millisecond)
	if after := calls.Load(); after != before {
		t.Errorf("RunGC looked at the twin %d more times with no change in between", after-before)
	}
	if n, _ := edge.Tombstones("d"); n == 0 {
		t.Error("a tombstone went although its member never acknowledged it")
	}
	cancel()
	<-done
}
