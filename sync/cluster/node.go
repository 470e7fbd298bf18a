package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

var (
	// ErrNotLeader is wrapped by *NotLeaderError: the call must go to the leader.
	ErrNotLeader = errors.New("this node is not the raft leader")
	// ErrClosed is returned by calls on a closed node.
	ErrClosed = errors.New("raft node is closed")
)

// NotLeaderError says which node leads, when this one knows, so the caller can
// send the request there. errors.Is(err, ErrNotLeader) holds.
type NotLeaderError struct {
	LeaderID   string // empty while no leader is known
	LeaderAddr string // the leader's raft address
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return "this node is not the raft leader and no leader is known yet: retry after an election"
	}
	return fmt.Sprintf("this node is not the raft leader: send it to node %q (raft %s)", e.LeaderID, e.LeaderAddr)
}

func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }

// Options configure a node. ID, RaftAddr, Dir, TLS and FSM are required; zero
// durations and counts take hashicorp/raft's defaults.
type Options struct {
	ID        string      // this node's raft server id, stable for its life
	RaftAddr  string      // address to bind the raft transport to (127.0.0.1:0 in tests)
	Advertise string      // address peers dial; default the bound address
	Dir       string      // raft.db (log and stable store) and snapshots/
	TLS       *tls.Config // mutual TLS of the cluster: see TLSConfig
	FSM       raft.FSM
	Bootstrap bool // form a one-voter cluster if Dir holds no raft state yet
	// AppliedIndex, if set, says the FSM keeps its state across restarts
	// and reports the last log index it applied: raft then does not
	// restore the latest snapshot on start (the FSM skips the entries it
	// already applied as the log replays them), unless the FSM is behind
	// that snapshot (a lost or replaced state), which Open restores first.
	AppliedIndex func() uint64
	Logger       *slog.Logger

	TrailingLogs      uint64        // log entries kept after a snapshot
	SnapshotThreshold uint64        // entries since the last snapshot that trigger one
	SnapshotInterval  time.Duration // how often to check the threshold
	SnapshotRetain    int           // snapshots kept on disk (default 2)

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration

	// PeerAddress, if set, says where this node dials a peer instead of
	// the raft address in the cluster's configuration (false: that
	// address): tests put a proxy between each ordered pair of nodes to
	// partition them or lose messages (raft's ServerAddressProvider).
	PeerAddress func(id string) (string, bool)

	MaxPool          int           // pooled outgoing connections per peer (default 3)
	Timeout          time.Duration // transport I/O timeout (default 10 s)
	HandshakeTimeout time.Duration // TLS handshake of an incoming connection (default 5 s)
}

// Node is one running raft server.
type Node struct {
	id     string
	raft   *raft.Raft
	trans  *raft.NetworkTransport
	stream *streamLayer
	store  *raftboltdb.BoltStore
	snaps  raft.SnapshotStore
	log    *slog.Logger

	lastApply atomic.Int64 // duration of the last Apply, ns
}

// Open starts a node over the state in opts.Dir. With Bootstrap set and no
// state there it forms a cluster of itself; otherwise it waits to be added by
// a leader (AddVoter) or rejoins the cluster its log names.
func Open(ctx context.Context, opts Options) (*Node, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("node_id", opts.ID)
	hlog := newHclog(log)
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("raft directory: %w", err)
	}
	n := &Node{id: opts.ID, log: log}
	if err := n.open(opts, hlog); err != nil {
		n.closeParts()
		return nil, err
	}
	return n, nil
}

func (o *Options) validate() error {
	switch {
	case o.ID == "":
		return errors.New("cluster: Options.ID is required (the node id, e.g. n1)")
	case o.RaftAddr == "":
		return errors.New("cluster: Options.RaftAddr is required (host:port to bind raft to)")
	case o.Dir == "":
		return errors.New("cluster: Options.Dir is required (where the raft log and snapshots live)")
	case o.FSM == nil:
		return errors.New("cluster: Options.FSM is required")
	}
	return nil
}

func (n *Node) open(opts Options, hlog hclog.Logger) error {
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(opts.Dir, "raft.db")})
	if err != nil {
		return fmt.Errorf("open raft log %s: %w", filepath.Join(opts.Dir, "raft.db"), err)
	}
	n.store = store
	logs, err := raft.NewLogCache(512, store)
	if err != nil {
		return fmt.Errorf("raft log cache: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(opts.Dir, defaultInt(opts.SnapshotRetain, 2), hlog)
	if err != nil {
		return fmt.Errorf("raft snapshot store in %s: %w", opts.Dir, err)
	}
	n.snaps = snaps
	if err := n.openTransport(opts, hlog); err != nil {
		return err
	}
	conf := opts.raftConfig(hlog)
	if err := n.bootstrap(opts, conf, logs, snaps); err != nil {
		return err
	}
	if opts.AppliedIndex != nil {
		conf.NoSnapshotRestoreOnStart = true
		if err := n.catchUp(opts, snaps); err != nil {
			return err
		}
	}
	r, err := raft.NewRaft(conf, opts.FSM, logs, store, snaps, n.trans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	return nil
}

func (n *Node) openTransport(opts Options, hlog hclog.Logger) error {
	var adv net.Addr
	if opts.Advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", opts.Advertise)
		if err != nil {
			return fmt.Errorf("raft advertise address %q: %w", opts.Advertise, err)
		}
		adv = a
	}
	stream, err := newStreamLayer(opts.RaftAddr, adv, opts.TLS, defaultDur(opts.HandshakeTimeout, 5*time.Second), n.log)
	if err != nil {
		return err
	}
	n.stream = stream
	cfg := &raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: defaultInt(opts.MaxPool, 3),
		Timeout: defaultDur(opts.Timeout, 10*time.Second),
		Logger:  hlog,
	}
	if opts.PeerAddress != nil {
		cfg.ServerAddressProvider = peerAddresses{self: opts.ID, addr: stream.Addr().String(), f: opts.PeerAddress}
	}
	n.trans = raft.NewNetworkTransportWithConfig(cfg)
	return nil
}

// peerAddresses is Options.PeerAddress as raft's ServerAddressProvider.
// raft also asks it for this node's own address (the one it advertises in
// its requests): that one is never overridden.
type peerAddresses struct {
	self, addr string
	f          func(id string) (string, bool)
}

func (p peerAddresses) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	if string(id) == p.self {
		return raft.ServerAddress(p.addr), nil
	}
	if addr, ok := p.f(string(id)); ok {
		return raft.ServerAddress(addr), nil
	}
	return "", fmt.Errorf("no address override for raft peer %q: dialing the configured one", id)
}

func (o *Options) raftConfig(hlog hclog.Logger) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(o.ID)
	c.Logger = hlog
	setU64(&c.TrailingLogs, o.TrailingLogs)
	setU64(&c.SnapshotThreshold, o.SnapshotThreshold)
	setDur(&c.SnapshotInterval, o.SnapshotInterval)
	setDur(&c.HeartbeatTimeout, o.HeartbeatTimeout)
	setDur(&c.ElectionTimeout, o.ElectionTimeout)
	setDur(&c.LeaderLeaseTimeout, o.LeaderLeaseTimeout)
	setDur(&c.CommitTimeout, o.CommitTimeout)
	return c
}

// bootstrap forms a one-voter cluster, once: raft.HasExistingState guards it,
// so restarting the first node never re-bootstraps over its log.
func (n *Node) bootstrap(opts Options, conf *raft.Config, logs raft.LogStore, snaps raft.SnapshotStore) error {
	if !opts.Bootstrap {
		return nil
	}
	has, err := raft.HasExistingState(logs, n.store, snaps)
	if err != nil {
		return fmt.Errorf("read raft state in %s: %w", opts.Dir, err)
	}
	if has {
		return nil
	}
	cfg := raft.Configuration{Servers: []raft.Server{{ID: conf.LocalID, Address: n.trans.LocalAddr()}}}
	if err := raft.BootstrapCluster(conf, logs, n.store, snaps, n.trans, cfg); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("bootstrap raft cluster: %w", err)
	}
	n.log.Info("raft cluster bootstrapped", "raft_addr", string(n.trans.LocalAddr()))
	return nil
}

// catchUp restores the latest snapshot into an FSM that is behind it.
func (n *Node) catchUp(opts Options, snaps raft.SnapshotStore) error {
	list, err := snaps.List()
	if err != nil || len(list) == 0 {
		return err
	}
	latest := list[0]
	if applied := opts.AppliedIndex(); applied >= latest.Index {
		return nil
	} else {
		n.log.Warn("the state machine is behind the latest raft snapshot: restoring it", "applied", applied, "snapshot_index", latest.Index)
	}
	_, rc, err := snaps.Open(latest.ID)
	if err != nil {
		return fmt.Errorf("open raft snapshot %s: %w", latest.ID, err)
	}
	defer rc.Close()
	if err := opts.FSM.Restore(rc); err != nil {
		return fmt.Errorf("restore raft snapshot %s: %w", latest.ID, err)
	}
	return nil
}

// StepDown hands the leadership to another voter when this node leads, so
// the others need not wait out an election timeout when it stops (a rolling
// restart moves on at once). It is a no-op on a follower.
func (n *Node) StepDown() {
	if n.raft.State() != raft.Leader {
		return
	}
	if err := n.raft.LeadershipTransfer().Error(); err != nil {
		n.log.Info("raft leadership transfer", "err", err)
		return
	}
	n.log.Info("raft leadership handed over before stopping")
}

// Close stops raft, the transport and the log store, in that order.
func (n *Node) Close() error {
	var errs []error
	if n.raft != nil {
		n.StepDown()
	}
	if n.raft != nil {
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("shut down raft: %w", err))
		}
	}
	errs = append(errs, n.closeParts())
	return errors.Join(errs...)
}

func (n *Node) closeParts() error {
	var errs []error
	if n.trans != nil {
		errs = append(errs, n.trans.Close())
		n.trans = nil
	} else if n.stream != nil {
		errs = append(errs, n.stream.Close())
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
		n.store = nil
	}
	return errors.Join(errs...)
}

func setU64(dst *uint64, v uint64) {
	if v != 0 {
		*dst = v
	}
}

func setDur(dst *time.Duration, v time.Duration) {
	if v != 0 {
		*dst = v
	}
}

func defaultInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func defaultDur(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}
