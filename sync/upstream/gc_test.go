package upstream

import (
	"fmt"
	"maps"
	"testing"

	"github.com/outpost-edge/outpost/store/twin"
)

// Tombstones stay bounded over 10 000 edit/delete cycles of one twin: each
// cycle sets a new desired key at the hub and a new reported key at the
// edge, then deletes both; the real link syncs them. Without stable GC
// every cycle leaves four tombstones (a delete and a clear per key) on
// both replicas: 40 000 after the run.
func TestTombstonesBounded(t *testing.T) {
	const cycles, checkEvery, bound = 10_000, 500, 4 * 500
	e := newEnv(t)
	eventually(t, "the twin of dev1", func() bool { _, err := e.twins.Get("dev1"); return err == nil })
	session, _ := e.twins.BeginSession()
	most := 0
	for i := range cycles {
		if _, err := e.hub.UpdateTwin(e.ctx, "dev1", fmt.Appendf(nil, `{"properties":{"desired":{"k%d":%d}}}`, i, i), false); err != nil {
			t.Fatal(err)
		}
		if _, err := e.twins.PatchReported(e.ctx, "dev1", session, fmt.Appendf(nil, `{"r%d":%d}`, i, i)); err != nil {
			t.Fatal(err)
		}
		if _, err := e.hub.UpdateTwin(e.ctx, "dev1", fmt.Appendf(nil, `{"properties":{"desired":{"k%d":null}}}`, i), false); err != nil {
			t.Fatal(err)
		}
		if _, err := e.twins.PatchReported(e.ctx, "dev1", session, fmt.Appendf(nil, `{"r%d":null}`, i)); err != nil {
			t.Fatal(err)
		}
		if (i+1)%checkEvery != 0 {
			continue
		}
		e.waitSynced(t)
		for _, s := range []*twin.Store{e.twins, e.hub.TwinStore()} {
			n, _ := s.Tombstones("dev1")
			most = max(most, n)
			if n > bound {
				t.Fatalf("after %d cycles %s holds %d tombstones of dev1; want at most %d", i+1, s.Replica(), n, bound)
			}
		}
	}
	e.waitSynced(t)
	eventually(t, "every tombstone collected", func() bool {
		a, _ := e.twins.Tombstones("dev1")
		b, _ := e.hub.TwinStore().Tombstones("dev1")
		return a == 0 && b == 0
	})
	edgeRecs, _ := e.twins.Records()
	hubRecs, _ := e.hub.TwinStore().Records()
	if edgeRecs > 40 || hubRecs > 40 {
		t.Fatalf("records after the run: edge %d, hub %d; want a few per twin", edgeRecs, hubRecs)
	}
	v, _ := e.twins.Get("dev1")
	if len(v.Desired) != 0 || len(v.Reported) != 0 {
		t.Fatalf("a deleted key is back: desired %v reported %v", v.Desired, v.Reported)
	}
	t.Logf("%d cycles: at most %d tombstones at a checkpoint, 0 at the end; records edge %d, hub %d; collected edge %d, hub %d",
		cycles, most, edgeRecs, hubRecs, e.twins.Stats().GCRemoved, e.hub.TwinStore().Stats().GCRemoved)
}

// waitSynced waits until edge and hub hold the same version vector.
func (e *env) waitSynced(t *testing.T) {
	t.Helper()
	eventually(t, "edge and hub in sync", func() bool {
		return maps.Equal(e.twins.VV(), e.hub.TwinStore().VV())
	})
}
