package hub

import (
	"bytes"
	"context"
	"maps"
	"testing"
)

// TestRouteCursorsForwardOnly: a commit moves each named cursor forward
// and leaves the others; a lower cursor (a deposed leader's late commit)
// changes nothing.
func TestRouteCursorsForwardOnly(t *testing.T) {
	ctx := context.Background()
	h := newFixture(t).h
	steps := []struct {
		set, want map[string]uint64
	}{
		{map[string]uint64{"js": 5, "k": 2}, map[string]uint64{"js": 5, "k": 2}},
		{map[string]uint64{"js": 9}, map[string]uint64{"js": 9, "k": 2}},
		{map[string]uint64{"js": 3, "k": 4}, map[string]uint64{"js": 9, "k": 4}},
		{map[string]uint64{}, map[string]uint64{"js": 9, "k": 4}},
	}
	for i, s := range steps {
		if err := h.SetRouteCursors(ctx, s.set); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		got, err := h.RouteCursors()
		if err != nil || !maps.Equal(got, s.want) {
			t.Fatalf("step %d: cursors %v (%v), want %v", i, got, err, s.want)
		}
	}
	if err := h.SetRouteCursors(ctx, map[string]uint64{"": 1}); err == nil {
		t.Fatal("a cursor without an endpoint name was taken")
	}
}

// TestRouteCursorsInSnapshot: a hub restored from a snapshot has the
// cursors the snapshot's hub committed, and none of its own before.
func TestRouteCursorsInSnapshot(t *testing.T) {
	ctx := context.Background()
	a, b := newFixture(t).h, newFixture(t).h
	if err := a.SetRouteCursors(ctx, map[string]uint64{"js": 12, "hook": 3}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetRouteCursors(ctx, map[string]uint64{"old": 99}); err != nil {
		t.Fatal(err)
	}
	var snap bytes.Buffer
	if err := a.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	if err := b.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	got, err := b.RouteCursors()
	if want := map[string]uint64{"js": 12, "hook": 3}; err != nil || !maps.Equal(got, want) {
		t.Fatalf("restored cursors %v (%v), want %v", got, err, want)
	}
}
