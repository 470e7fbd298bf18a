package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/outpost-edge/outpost/sync/cluster"
	synchub "github.com/outpost-edge/outpost/sync/hub"
)

// raftFSM is the hub's state machine as hashicorp/raft drives it: entries
// in batches (one index write per batch), snapshots streamed from a read
// view taken between two applies.
//
// raft bounds its log in entries (a snapshot every SnapshotThreshold
// entries), but one entry is an edge's frame of up to a thousand events:
// raftFSM also asks for a snapshot once snapshotBytes of commands were
// applied since the last one, so the log stays bounded in bytes.
type raftFSM struct {
	f             *synchub.FSM
	snapshotBytes int64
	node          atomic.Pointer[cluster.Node] // set once raft runs
	log           *slog.Logger

	since     atomic.Int64 // command bytes applied since the last snapshot
	requested atomic.Bool
}

var _ raft.BatchingFSM = (*raftFSM)(nil)

func (r *raftFSM) Apply(l *raft.Log) any { return r.ApplyBatch([]*raft.Log{l})[0] }

func (r *raftFSM) ApplyBatch(logs []*raft.Log) []any {
	entries := make([]synchub.LogEntry, len(logs))
	var n int64
	for i, l := range logs {
		entries[i].Index = l.Index
		if l.Type == raft.LogCommand {
			entries[i].Data = l.Data
			n += int64(len(l.Data))
		}
	}
	if r.snapshotBytes > 0 && r.since.Add(n) >= r.snapshotBytes && !r.requested.Swap(true) {
		go r.snapshotNow()
	}
	res := r.f.ApplyEntries(entries)
	out := make([]any, len(res))
	for i := range res {
		out[i] = res[i]
	}
	return out
}

// snapshotNow asks raft for a snapshot (off the FSM goroutine: raft's
// snapshot waits for it).
func (r *raftFSM) snapshotNow() {
	n := r.node.Load()
	if n == nil {
		r.requested.Store(false)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := n.Snapshot(ctx); err != nil {
		r.requested.Store(false)
		r.log.Warn("raft snapshot after the log grew past --raft-snapshot-size", "err", err)
	}
}

func (r *raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	r.since.Store(0)
	r.requested.Store(false)
	return fsmSnapshot{r.f.View()}, nil
}

// Restore replaces the state with a snapshot's: on start when the store is
// behind the latest snapshot, and when the leader sends one to a node too
// far behind its log. It says so in the log (operators and the scenarios
// read it).
func (r *raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	start := time.Now()
	if err := r.f.RestoreFrom(rc); err != nil {
		return err
	}
	if r.log != nil {
		r.log.Info("state machine restored from a raft snapshot", "index", r.f.AppliedIndex(), "took", time.Since(start).Round(time.Millisecond))
	}
	r.since.Store(0) // the state is a snapshot's again
	return nil
}

type fsmSnapshot struct{ v *synchub.SnapshotView }

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.v.Write(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s fsmSnapshot) Release() { s.v.Release() }

// raftLog is a sync/cluster node as the hub's replicated log
// (synchub.Cluster). A node that just became leader first waits until
// every entry committed before its term is applied (a barrier), so what
// it reads after VerifyLeader includes every acknowledged write.
type raftLog struct {
	n *cluster.Node

	mu          sync.Mutex
	barrierTerm uint64 // the term whose barrier completed
}

func (l *raftLog) ID() string { return l.n.ID() }

func (l *raftLog) Apply(ctx context.Context, entry []byte) (any, error) {
	v, err := l.n.Apply(ctx, entry)
	return v, notLeader(err)
}

func (l *raftLog) VerifyLeader(ctx context.Context) error { return notLeader(l.n.VerifyLeader(ctx)) }

func (l *raftLog) LeaderID() string {
	id, _ := l.n.Leader()
	return id
}

// Voters are the ids of the cluster's voting members, as this node's
// configuration knows them (a pushed image is copied to a majority).
func (l *raftLog) Voters() ([]string, error) {
	ms, err := l.n.Members()
	if err != nil {
		return nil, notLeader(err)
	}
	var ids []string
	for _, m := range ms {
		if m.Suffrage == raft.Voter.String() {
			ids = append(ids, m.ID)
		}
	}
	return ids, nil
}

func (l *raftLog) IsLeader() bool {
	if !l.n.IsLeader() {
		return false
	}
	term := l.n.Term()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.barrierTerm == term {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.n.Barrier(ctx); err != nil {
		return false
	}
	l.barrierTerm = term
	return true
}

// CaughtUp reports whether this node applied every entry it knows
// committed, and knows the commit index from a leader heard within the
// last 2 s (or leads, its barrier done).
func (l *raftLog) CaughtUp() bool {
	if l.IsLeader() {
		return true
	}
	s := l.n.Stats()
	return s.CommitIndex > 0 && s.AppliedIndex >= s.CommitIndex && time.Since(s.LastContact) < 2*time.Second
}

// Health is this node's part of /healthz: its raft state and progress.
func (l *raftLog) Health() any {
	s := l.n.Stats()
	return map[string]any{"id": l.n.ID(), "state": s.State, "leader": l.LeaderID(), "term": s.Term,
		"commitIndex": s.CommitIndex, "appliedIndex": s.AppliedIndex}
}

// Metrics are the node's raft gauges for /metrics.
func (l *raftLog) Metrics() []synchub.Metric {
	s := l.n.Stats()
	leader := 0.0
	if s.State == raft.Leader.String() {
		leader = 1
	}
	age := -1.0
	if at := l.n.LastSnapshotTime(); !at.IsZero() {
		age = time.Since(at).Seconds()
	}
	return []synchub.Metric{
		{Name: "outpost_hub_raft_leader", Help: "1 while this node leads the cluster.", Value: leader},
		{Name: "outpost_hub_raft_term", Help: "The raft term this node is in.", Value: float64(s.Term)},
		{Name: "outpost_hub_raft_commit_index", Help: "Index of the last entry known committed.", Value: float64(s.CommitIndex)},
		{Name: "outpost_hub_raft_applied_index", Help: "Index of the last entry this node's state machine applied.", Value: float64(s.AppliedIndex)},
		{Name: "outpost_hub_raft_last_snapshot_index", Help: "Index of this node's latest snapshot.", Value: float64(s.LastSnapshotIndex)},
		{Name: "outpost_hub_raft_snapshot_age_seconds", Help: "Age of this node's latest snapshot (-1: none yet).", Value: age},
		{Name: "outpost_hub_raft_apply_seconds", Help: "Time of the last entry from proposal to applied on this node (leader only).", Value: l.n.LastApply().Seconds()},
	}
}

// notLeader turns the raft node's "not now" errors into the hub's 503.
func notLeader(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, cluster.ErrNotLeader), errors.Is(err, cluster.ErrClosed),
		errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrAbortedByRestore):
		return fmt.Errorf("%w: %w", synchub.ErrNotLeader, err)
	}
	return err
}
