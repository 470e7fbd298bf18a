package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// Apply proposes cmd and waits until this node's FSM applied it, returning the
// FSM's response. A response that is an error is returned as the error. On a
// follower it fails with *NotLeaderError naming the leader.
//
// raft.ErrLeadershipLost means the entry may or may not be committed: commands
// must be idempotent for a caller that retries.
func (n *Node) Apply(ctx context.Context, cmd []byte) (any, error) {
	start := time.Now()
	f := n.raft.Apply(cmd, enqueueTimeout(ctx))
	if err := n.wait(ctx, f); err != nil {
		return nil, fmt.Errorf("raft apply: %w", err)
	}
	n.lastApply.Store(int64(time.Since(start)))
	resp := f.Response()
	if err, ok := resp.(error); ok {
		return nil, err
	}
	return resp, nil
}

// Barrier waits until every entry committed before it is applied to this
// node's FSM. Leader only.
func (n *Node) Barrier(ctx context.Context) error {
	if err := n.wait(ctx, n.raft.Barrier(enqueueTimeout(ctx))); err != nil {
		return fmt.Errorf("raft barrier: %w", err)
	}
	return nil
}

// VerifyLeader confirms with a quorum that this node still leads; a read of
// the FSM made after it is linearizable. Leader only.
func (n *Node) VerifyLeader(ctx context.Context) error {
	if err := n.wait(ctx, n.raft.VerifyLeader()); err != nil {
		return fmt.Errorf("raft verify leader: %w", err)
	}
	return nil
}

// Snapshot takes a snapshot now and compacts the log (keeping TrailingLogs).
func (n *Node) Snapshot(ctx context.Context) error {
	if err := n.wait(ctx, n.raft.Snapshot()); err != nil {
		return fmt.Errorf("raft snapshot: %w", err)
	}
	return nil
}

// Leader returns the leader's id and raft address, empty when none is known.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// Term is the raft term this node is in.
func (n *Node) Term() uint64 { return n.raft.CurrentTerm() }

// LastApply is how long the last Apply on this node took, from proposal
// to applied.
func (n *Node) LastApply() time.Duration { return time.Duration(n.lastApply.Load()) }

// ID is this node's raft server id.
func (n *Node) ID() string { return n.id }

// Addr is the raft address peers dial to reach this node.
func (n *Node) Addr() string { return n.stream.Addr().String() }

// IsLeader says whether this node believes it leads (confirm with VerifyLeader).
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// LeaderCh reports leadership gained (true) and lost (false). raft drops
// changes nobody reads, so read it if you rely on it.
func (n *Node) LeaderCh() <-chan bool { return n.raft.LeaderCh() }

// AddVoter adds (or re-addresses) a voting member. Leader only.
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	f := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, enqueueTimeout(ctx))
	if err := n.wait(ctx, f); err != nil {
		return fmt.Errorf("add voter %q at %s: %w", id, addr, err)
	}
	return nil
}

// Remove takes a member out of the cluster. Leader only.
func (n *Node) Remove(ctx context.Context, id string) error {
	f := n.raft.RemoveServer(raft.ServerID(id), 0, enqueueTimeout(ctx))
	if err := n.wait(ctx, f); err != nil {
		return fmt.Errorf("remove member %q: %w", id, err)
	}
	return nil
}

// Rejected counts incoming raft connections refused because the peer's TLS
// handshake failed (no certificate, or one from another CA).
func (n *Node) Rejected() uint64 { return n.stream.Rejected() }

// wait blocks on a raft future until it resolves or ctx ends, and turns raft's
// not-leader errors into *NotLeaderError. The future itself is not cancelled:
// an entry proposed before ctx ended may still commit.
func (n *Node) wait(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return n.mapErr(err)
	case <-ctx.Done():
		return fmt.Errorf("waiting for raft: %w", ctx.Err())
	}
}

func (n *Node) mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrNotVoter):
		id, addr := n.Leader()
		return &NotLeaderError{LeaderID: id, LeaderAddr: addr}
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// enqueueTimeout bounds how long raft may wait to accept a request: until
// ctx's deadline, or no bound.
func enqueueTimeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		if left := time.Until(d); left > 0 {
			return left
		}
		return time.Nanosecond
	}
	return 0
}

// Member is one server of the cluster's configuration. State and LastIndex
// are known only for this node itself (and State for the leader); raft does
// not expose its followers' progress.
type Member struct {
	ID        string `json:"id"`
	Raft      string `json:"raft"`
	Suffrage  string `json:"suffrage"` // Voter, Nonvoter, Staging
	Leader    bool   `json:"leader"`
	State     string `json:"state,omitempty"` // Leader, Follower, Candidate; empty when unknown
	LastIndex uint64 `json:"lastIndex,omitempty"`
}

// Members lists the latest configuration as this node knows it.
func (n *Node) Members() ([]Member, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", n.mapErr(err))
	}
	leaderID, _ := n.Leader()
	var out []Member
	for _, s := range f.Configuration().Servers {
		m := Member{ID: string(s.ID), Raft: string(s.Address), Suffrage: s.Suffrage.String(), Leader: string(s.ID) == leaderID && leaderID != ""}
		switch {
		case string(s.ID) == n.id:
			m.State, m.LastIndex = n.raft.State().String(), n.raft.LastIndex()
		case m.Leader:
			m.State = raft.Leader.String()
		}
		out = append(out, m)
	}
	return out, nil
}

// Stats is this node's view of raft's progress.
type Stats struct {
	State             string    `json:"state"`
	Term              uint64    `json:"term"`
	LastIndex         uint64    `json:"lastIndex"`
	CommitIndex       uint64    `json:"commitIndex"`
	AppliedIndex      uint64    `json:"appliedIndex"`
	LastSnapshotIndex uint64    `json:"lastSnapshotIndex"`
	LastSnapshotTerm  uint64    `json:"lastSnapshotTerm"`
	LastContact       time.Time `json:"lastContact,omitzero"`      // with the leader; zero on the leader or never
	LastSnapshotTime  time.Time `json:"lastSnapshotTime,omitzero"` // only where the caller fills it (LastSnapshotTime)
}

// Stats reads the node's raft counters.
func (n *Node) Stats() Stats {
	raw := n.raft.Stats()
	s := Stats{
		State:        n.raft.State().String(),
		Term:         n.raft.CurrentTerm(),
		LastIndex:    n.raft.LastIndex(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.raft.AppliedIndex(),
		LastContact:  n.raft.LastContact(),
	}
	s.LastSnapshotIndex, _ = strconv.ParseUint(raw["last_snapshot_index"], 10, 64)
	s.LastSnapshotTerm, _ = strconv.ParseUint(raw["last_snapshot_term"], 10, 64)
	return s
}

// LastSnapshotTime is when this node's latest snapshot was taken (zero:
// none). It lists the snapshot directory: Stats leaves it out, as health
// checks call Stats often.
func (n *Node) LastSnapshotTime() time.Time {
	list, err := n.snaps.List()
	if err != nil || len(list) == 0 {
		return time.Time{}
	}
	// A file snapshot's id is term-index-unixms.
	if i := strings.LastIndexByte(list[0].ID, '-'); i >= 0 {
		if ms, err := strconv.ParseInt(list[0].ID[i+1:], 10, 64); err == nil {
			return time.UnixMilli(ms)
		}
	}
	return time.Time{}
}

// SnapshotCompact takes a snapshot and drops the whole log before it, so
// a node that joins later receives the state as a snapshot: needed once
// when a state that did not come from the log (a single hub turned into
// the first node of a cluster) is the cluster's start.
func (n *Node) SnapshotCompact(ctx context.Context) error {
	rc := n.raft.ReloadableConfig()
	keep := rc.TrailingLogs
	rc.TrailingLogs = 0
	if err := n.raft.ReloadConfig(rc); err != nil {
		return fmt.Errorf("raft: drop the trailing logs: %w", err)
	}
	defer func() {
		rc.TrailingLogs = keep
		if err := n.raft.ReloadConfig(rc); err != nil {
			n.log.Error("raft: restore the trailing logs setting", "err", err)
		}
	}()
	return n.Snapshot(ctx)
}

// HasState reports whether dir holds a raft log (a node that ran before).
func HasState(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "raft.db"))
	return err == nil
}
