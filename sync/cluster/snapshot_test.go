package cluster

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// A follower that was down while the leader compacted its log past the
// follower's last entry comes back by installing the leader's snapshot: its
// FSM's Restore runs and none of the entries it missed is applied one by one.
func TestLaggingNodeCatchesUpBySnapshot(t *testing.T) {
	c := newTestCluster(t)
	small := func(o *Options) {
		o.TrailingLogs, o.SnapshotThreshold, o.SnapshotInterval = 10, 40, 50*time.Millisecond
	}
	leader := c.threeNodes(small)
	c.applyMany(leader, "a", 100)
	c.waitSame(100)
	down := c.followers(leader)[0]
	downIndex := down.Stats().LastIndex
	if err := down.Close(); err != nil {
		t.Fatal(err)
	}
	c.applyMany(leader, "b", 500)
	c.waitSame(600)
	// Leadership may have moved during the applies: every live node takes a
	// snapshot and compacts, so whichever leads has no log to replay.
	snapIndex := uint64(0)
	for _, n := range c.followers(down) {
		if err := n.Snapshot(ctxT(t, 10*time.Second)); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
			t.Fatal(err)
		}
		if i := n.Stats().LastSnapshotIndex; snapIndex == 0 || i < snapIndex {
			snapIndex = i
		}
	}
	if snapIndex <= downIndex+10 {
		t.Fatalf("the live nodes' snapshots (lowest at %d) do not cover the %d entries missed after %d", snapIndex, 500, downIndex)
	}

	back := c.restart(down)
	c.waitSame(600)
	if back.fsm.restored.Load() == 0 {
		t.Fatal("the restarted node caught up without Restore: it replayed the log instead of installing a snapshot")
	}
	if low := back.fsm.lowestApplied(); low != 0 && low <= snapIndex {
		t.Fatalf("after the last Restore the node applied index %d, inside the leader's snapshot (≤ %d): log replay, not install", low, snapIndex)
	}
	// raft records the installed snapshot's index just after the FSM's
	// Restore returns: wait for it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st := back.Stats()
		if st.LastSnapshotIndex >= snapIndex {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted node's last snapshot %d, want ≥ the leader's %d", st.LastSnapshotIndex, snapIndex)
		}
	}
}
