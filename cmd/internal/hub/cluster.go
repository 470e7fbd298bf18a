package hub

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/certs"
	"github.com/outpost-edge/outpost/cmd/internal/secret"
	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/sync/cluster"
	synchub "github.com/outpost-edge/outpost/sync/hub"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// A clustered hub (--node-id, --raft, --join): the hub's state machine
// replicated by a sync/cluster raft node in <data>/raft, the cluster CA in
// <data>/cluster, and the endpoints of membership under /cluster/.

const (
	clusterDir = "cluster" // ca.pem, ca-key.pem: the cluster CA of the raft transport
	raftDir    = "raft"    // raft.db and snapshots
	// migratingFile, in raftDir, marks a single hub's state not yet in
	// the cluster's first snapshot (see migrate): it outlives a stop.
	migratingFile = "migrating"
	nodeCertLife  = 10 * 365 * 24 * time.Hour
)

func (c Config) clustered() bool {
	return c.NodeID != "" || c.Raft != "" || c.Join != "" || c.RaftAdvertise != ""
}

func (c Config) checkCluster() error {
	switch {
	case c.NodeID == "" || c.Raft == "":
		return errors.New("a cluster node needs --node-id and --raft (and --join on every node but the first)")
	case !validNodeID(c.NodeID):
		return fmt.Errorf("--node-id %q: want 1 to 64 letters, digits, '-', '_' or '.'", c.NodeID)
	case c.Hostname == "":
		return errors.New("a cluster node needs --hostname: the cluster's one IoT Hub host name, the same on every node (connection strings and SAS tokens name it)")
	}
	return nil
}

// clusterRun is the cluster part of one hub's run.
type clusterRun struct {
	cfg   Config
	key   []byte
	api   string // this node's API base URL
	h     *synchub.Hub
	node  *cluster.Node
	ca    *cluster.CA
	fsm   *raftFSM
	rlog  *raftLog
	peer  *http.Client // to the other nodes' APIs
	log   *slog.Logger
	joins nonces // of the join requests taken, against a replay
	// absent: since when each recorded node is out of the configuration
	// (maintain's goroutine only; see pruneNodes).
	absent map[string]time.Time
	// migrating: this node's state predates the cluster; joins wait until
	// it is in a snapshot (see migrate).
	migrating atomic.Bool
}

// clusterCA loads the cluster CA, makes it on a first node, or fetches it
// from the cluster on a joining one (with the hub's HTTPS CA, when the
// cluster has one and this node has none yet).
func clusterCA(ctx context.Context, cfg Config, key []byte) (*cluster.CA, error) {
	dir := filepath.Join(cfg.DataDir, clusterDir)
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	if _, err := os.Stat(certPath); err == nil {
		return cluster.LoadCA(certPath, keyPath)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if cfg.Join == "" {
		ca, err := cluster.NewCA("Outpost hub cluster CA", nodeCertLife)
		if err != nil {
			return nil, err
		}
		return ca, ca.Save(certPath, keyPath)
	}
	b, err := fetchBundle(ctx, cfg, key)
	if err != nil {
		return nil, err
	}
	if b.APICA != "" {
		if err := installAPICA(cfg.DataDir, b, cfg.Logger); err != nil {
			return nil, err
		}
	}
	if b.Incarnation != "" {
		if err := secret.WritePublic(filepath.Join(cfg.DataDir, incarnationFile), []byte(b.Incarnation+"\n")); err != nil {
			return nil, err
		}
	}
	ca, err := cluster.ParseCA([]byte(b.ClusterCA), []byte(b.ClusterCAKey))
	if err != nil {
		return nil, fmt.Errorf("the cluster CA from --join: %w", err)
	}
	return ca, ca.Save(certPath, keyPath)
}

// joinClient reaches --join. Its TLS certificate is not checked: this node
// cannot know the cluster's CA yet, and needs not: the request is bound to
// the owner key (an HMAC) and the answer sealed with it, so a host in the
// middle can neither make nor read nor alter a join.
func joinClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, // see above
	}}
}

// fetchBundle asks --join for the cluster CA, again while the cluster
// has no leader (503) or the node does not answer, for up to a minute.
func fetchBundle(ctx context.Context, cfg Config, key []byte) (joinBundle, error) {
	var j joinRequest
	var a joinAnswer
	var err error
	client := joinClient()
	defer client.CloseIdleConnections()
	for deadline, wait := time.Now().Add(time.Minute), 200*time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		j = newJoinRequest("ca", cfg.NodeID, "", "", key)
		a, err = postJoin(ctx, client, cfg.Join, j)
		var apiErr *protocol.APIError
		if err == nil || (errors.As(err, &apiErr) && apiErr.Status != 503) || time.Now().After(deadline) {
			break
		}
		cfg.Logger.Info("join: waiting for the cluster", "via", cfg.Join, "err", err)
		select {
		case <-ctx.Done():
			return joinBundle{}, ctx.Err()
		case <-time.After(wait):
		}
	}
	if err != nil {
		return joinBundle{}, err
	}
	plain, err := unseal(key, j.Nonce, a.Sealed)
	if err != nil {
		return joinBundle{}, fmt.Errorf("--join %s: %w", cfg.Join, err)
	}
	var b joinBundle
	if err := json.Unmarshal(plain, &b); err != nil || b.ClusterCA == "" {
		return joinBundle{}, fmt.Errorf("--join %s: the bundle holds no cluster CA", cfg.Join)
	}
	return b, nil
}

// installAPICA makes the cluster's HTTPS CA this node's, so that edges
// and the CLI trust every node with one ca.pem.
func installAPICA(dataDir string, b joinBundle, log *slog.Logger) error {
	dir := filepath.Join(dataDir, "certs")
	if _, err := os.Stat(filepath.Join(dir, certs.CAFile)); err == nil {
		log.Warn("this node keeps its own HTTPS CA, not the cluster's: edges and the CLI need both to trust every node (--hub-ca); "+
			"remove <data>/certs before the node first joins to share the cluster's", "ca", filepath.Join(dir, certs.CAFile))
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := secret.Write(filepath.Join(dir, certs.CAKeyFile), []byte(b.APICAKey)); err != nil {
		return err
	}
	return secret.WritePublic(filepath.Join(dir, certs.CAFile), []byte(b.APICA))
}

// openNode starts the raft node over the hub's state machine.
func (c *clusterRun) openNode(ctx context.Context) error {
	ca := c.ca
	certPEM, keyPEM, err := ca.Issue(c.cfg.NodeID, nodeCertLife)
	if err != nil {
		return err
	}
	tlsCfg, err := cluster.TLSConfig(ca.CertPEM, certPEM, keyPEM)
	if err != nil {
		return err
	}
	fsm := c.h.FSM()
	c.fsm = &raftFSM{f: fsm, snapshotBytes: cmp.Or(c.cfg.SnapshotBytes, DefaultSnapshotBytes), log: c.log}
	rdir := filepath.Join(c.cfg.DataDir, raftDir)
	marker := filepath.Join(rdir, migratingFile)
	if !cluster.HasState(rdir) {
		empty, err := fsm.Empty()
		if err != nil {
			return err
		}
		switch {
		case !empty && c.cfg.Join != "":
			return fmt.Errorf("%s holds a hub's state (devices, twins, events or images): a joining node starts from an empty --data directory and receives the cluster's state", c.cfg.DataDir)
		case !empty:
			// A single hub (or a backup) becomes the cluster's first node:
			// its state is not in the log, so the log starts again at 1
			// and is compacted behind a snapshot before any node joins
			// (migrate).
			if err := fsm.ResetApplied(); err != nil {
				return err
			}
			if err := os.MkdirAll(rdir, 0o700); err != nil {
				return err
			}
			if err := secret.WritePublic(marker, nil); err != nil {
				return err
			}
		}
	}
	if _, err := os.Stat(marker); err == nil {
		c.migrating.Store(true)
	}
	o := cluster.Options{ID: c.cfg.NodeID, RaftAddr: c.cfg.Raft, Advertise: c.cfg.RaftAdvertise, Dir: rdir, TLS: tlsCfg,
		FSM: c.fsm, Bootstrap: c.cfg.Join == "", AppliedIndex: fsm.AppliedIndex, Logger: c.log,
		TrailingLogs: cmp.Or(c.cfg.TrailingLogs, DefaultTrailingLogs), SnapshotThreshold: c.cfg.SnapshotThreshold, SnapshotInterval: c.cfg.SnapshotInterval,
		PeerAddress: c.cfg.RaftPeerAddress}
	if c.node, err = cluster.Open(ctx, o); err != nil {
		return fmt.Errorf("--raft %s: %w", c.cfg.Raft, err)
	}
	c.fsm.node.Store(c.node)
	c.rlog = &raftLog{n: c.node}
	c.h.SetCluster(c.rlog)
	return nil
}

// peerClient trusts what the nodes' APIs present: the system's roots and
// the cluster's HTTPS CA.
func peerClient(dataDir string) *http.Client {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if pem, err := os.ReadFile(filepath.Join(dataDir, "certs", certs.CAFile)); err == nil {
		pool.AppendCertsFromPEM(pem)
	}
	// No response-header timeout (forwarded long polls and method calls
	// wait for minutes); a leader whose machine vanished is noticed by the
	// dial timeout and TCP keepalives within about 11 s.
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 5 * time.Second,
		Interval: 2 * time.Second, Count: 3}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second, IdleConnTimeout: 90 * time.Second, ExpectContinueTimeout: 2 * time.Second}}
}

// handle registers the membership endpoints on mux, each read and
// answered within --request-timeout as the hub's own.
func (c *clusterRun) handle(mux *http.ServeMux) {
	mux.Handle("POST "+joinPath, c.h.WithDeadline(http.HandlerFunc(c.join)))
	mux.Handle("GET /cluster/members", c.h.WithDeadline(c.owner(c.members)))
	mux.Handle("DELETE /cluster/members/{id}", c.h.WithDeadline(c.owner(c.leave)))
	mux.Handle("GET /cluster/status", c.h.WithDeadline(c.owner(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, c.status())
	})))
}

// forwardOptions: what a follower answers itself and what it forwards
// without a token.
func (c *clusterRun) forwardOptions() synchub.ForwardOptions {
	return synchub.ForwardOptions{
		Local: func(r *http.Request) bool {
			if c.cfg.staleReads && r.Method == http.MethodGet {
				return true
			}
			switch r.URL.Path {
			case "/healthz", "/metrics", "/cluster/status":
				return true
			}
			return false
		},
		Transport: c.peer.Transport,
		Self:      c.api,
	}
}

func (c *clusterRun) owner(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, err := sas.ParseToken(r.Header.Get("Authorization"))
		if err == nil {
			err = sas.Verify(tok, c.cfg.Hostname, [][]byte{c.key}, time.Now(), sas.DefaultSkew)
		}
		if err != nil {
			protocol.WriteError(w, 401, "Unauthorized", fmt.Sprintf("%v (use the owner connection string)", err))
			return
		}
		next(w, r)
	}
}

// join takes one join step, on the leader (followers forward it).
func (c *clusterRun) join(w http.ResponseWriter, r *http.Request) {
	var j joinRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&j); err != nil {
		protocol.WriteError(w, 400, "BadRequest", "the join request is not JSON: "+err.Error())
		return
	}
	key, err := c.h.FSM().OwnerKey()
	if err != nil || key == nil {
		key = c.key // the first node has not recorded it yet
	}
	now := time.Now()
	err = j.check(key, now)
	if err == nil && !c.joins.fresh(j, now) {
		err = errors.New("this join request was taken already: a node sends each request once (a replay?)")
	}
	if err != nil {
		c.log.Warn("join refused", "node_id", j.ID, "err", err)
		protocol.WriteError(w, 403, "Forbidden", err.Error())
		return
	}
	if j.Step == "add" && c.migrating.Load() {
		writeHubError(w, fmt.Errorf("%w: the first node is still turning its single-hub state into the cluster's first snapshot", synchub.ErrNotLeader))
		return
	}
	switch j.Step {
	case "ca":
		c.sendBundle(w, j, key)
	case "add":
		c.addNode(w, r, j)
	}
}

func (c *clusterRun) sendBundle(w http.ResponseWriter, j joinRequest, key []byte) {
	dir := filepath.Join(c.cfg.DataDir, clusterDir)
	var b joinBundle
	for _, f := range []struct {
		dst  *string
		path string
	}{
		{&b.ClusterCA, filepath.Join(dir, "ca.pem")}, {&b.ClusterCAKey, filepath.Join(dir, "ca-key.pem")},
		{&b.APICA, filepath.Join(c.cfg.DataDir, "certs", certs.CAFile)}, {&b.APICAKey, filepath.Join(c.cfg.DataDir, "certs", certs.CAKeyFile)},
	} {
		if data, err := os.ReadFile(f.path); err == nil {
			*f.dst = string(data)
		}
	}
	if b.APICAKey == "" {
		b.APICA = ""
	}
	if inc, err := os.ReadFile(filepath.Join(c.cfg.DataDir, incarnationFile)); err == nil {
		b.Incarnation = strings.TrimSpace(string(inc))
	}
	plain, _ := json.Marshal(b)
	sealed, err := seal(key, j.Nonce, plain)
	if err != nil {
		protocol.WriteError(w, 500, "InternalServerError", err.Error())
		return
	}
	c.log.Info("cluster CA handed to a joining node", "node_id", j.ID)
	writeJSON(w, joinAnswer{Sealed: sealed})
}

func (c *clusterRun) addNode(w http.ResponseWriter, r *http.Request, j joinRequest) {
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	if err := c.h.SetNode(ctx, synchub.NodeInfo{ID: j.ID, Raft: j.Raft, API: j.API}); err != nil {
		writeHubError(w, err)
		return
	}
	if err := c.node.AddVoter(ctx, j.ID, j.Raft); err != nil {
		writeHubError(w, notLeader(err))
		return
	}
	c.log.Info("node joined the cluster", "node_id", j.ID, "raft", j.Raft, "api", j.API)
	writeJSON(w, joinAnswer{})
}

// Member is one line of `outpost hub members`.
type Member struct {
	ID        string `json:"id"`
	Raft      string `json:"raft"`
	API       string `json:"api"`
	Leader    bool   `json:"leader"`
	State     string `json:"state"` // Leader, Follower, Candidate, or unreachable
	LastIndex uint64 `json:"lastIndex"`
	Suffrage  string `json:"suffrage"`
}

func (c *clusterRun) members(w http.ResponseWriter, r *http.Request) {
	list, err := c.node.Members()
	if err != nil {
		writeHubError(w, notLeader(err))
		return
	}
	nodes, _ := c.h.FSM().Nodes()
	api := map[string]string{}
	for _, n := range nodes {
		api[n.ID] = n.API
	}
	out := make([]Member, len(list))
	var wg sync.WaitGroup
	for i, m := range list {
		out[i] = Member{ID: m.ID, Raft: m.Raft, API: api[m.ID], Leader: m.Leader, Suffrage: m.Suffrage, State: "unreachable"}
		if m.ID == c.cfg.NodeID {
			s := c.status()
			out[i].State, out[i].LastIndex = s.State, s.LastIndex
			continue
		}
		wg.Add(1)
		go func(m *Member) {
			defer wg.Done()
			if s, err := c.peerStatus(r.Context(), m.API); err == nil {
				m.State, m.LastIndex = s.State, s.LastIndex
			}
		}(&out[i])
	}
	wg.Wait()
	writeJSON(w, out)
}

// nodeStatus is GET /cluster/status: this node's raft progress.
type nodeStatus struct {
	ID     string `json:"id"`
	Leader string `json:"leader"`
	cluster.Stats
}

func (c *clusterRun) status() nodeStatus {
	st := nodeStatus{ID: c.cfg.NodeID, Leader: c.rlog.LeaderID(), Stats: c.node.Stats()}
	st.LastSnapshotTime = c.node.LastSnapshotTime()
	return st
}

func (c *clusterRun) peerStatus(ctx context.Context, api string) (nodeStatus, error) {
	if api == "" {
		return nodeStatus{}, errors.New("no API address known")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimSuffix(api, "/")+"/cluster/status", nil)
	if err != nil {
		return nodeStatus{}, err
	}
	req.Header.Set("Authorization", sas.NewToken(c.cfg.Hostname, c.key, "owner", time.Now().Add(time.Minute)))
	resp, err := c.peer.Do(req)
	if err != nil {
		return nodeStatus{}, err
	}
	defer resp.Body.Close()
	var s nodeStatus
	if resp.StatusCode != 200 {
		return s, fmt.Errorf("%s", resp.Status)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

func (c *clusterRun) leave(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	list, err := c.node.Members()
	if err != nil {
		writeHubError(w, notLeader(err))
		return
	}
	if !slices.ContainsFunc(list, func(m cluster.Member) bool { return m.ID == id }) {
		// raft takes the removal of an unknown id without a word: a typo
		// would read as done.
		protocol.WriteError(w, 404, "NotFound", fmt.Sprintf("no node %q in the cluster (outpost hub members lists them)", id))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	if err := c.node.Remove(ctx, id); err != nil {
		writeHubError(w, notLeader(err))
		return
	}
	if id != c.cfg.NodeID {
		if err := c.h.RemoveNode(ctx, id); err != nil {
			c.log.Warn("forget the node's address", "node_id", id, "err", err)
		}
	}
	c.log.Info("node left the cluster", "node_id", id)
	w.WriteHeader(http.StatusNoContent)
}

// joinCluster adds this node as a voter through --join (any node),
// retrying until the cluster takes it or ctx ends; a refusal (403: another
// owner key, or a clock too far off) goes to errc, as no retry mends it.
func (c *clusterRun) joinCluster(ctx context.Context, errc chan<- error) {
	client := joinClient()
	defer client.CloseIdleConnections()
	for wait := 500 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		_, err := postJoin(ctx, client, c.cfg.Join, newJoinRequest("add", c.cfg.NodeID, c.node.Addr(), c.api, c.key))
		if err == nil {
			c.log.Info("joined the cluster", "via", c.cfg.Join)
			return
		}
		var apiErr *protocol.APIError
		if errors.As(err, &apiErr) && apiErr.Status == http.StatusForbidden {
			errc <- fmt.Errorf("the cluster refused this node: %w", err)
			return
		}
		c.log.Warn("join the cluster: retrying", "via", c.cfg.Join, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// maintain keeps this node's records in the state machine true: on the
// leader, the owner key and its own address; on every node, it checks its
// owner key is the cluster's (errc gets the mismatch).
func (c *clusterRun) maintain(ctx context.Context, errc chan<- error) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := c.maintainOnce(ctx); err != nil {
			errc <- err
			return
		}
	}
}

func (c *clusterRun) maintainOnce(ctx context.Context) error {
	fsm := c.h.FSM()
	key, err := fsm.OwnerKey()
	if err != nil {
		return nil
	}
	if key != nil && !bytes.Equal(key, c.key) {
		return errors.New("this node's owner key is not the cluster's: start it with the cluster's owner key (--owner-key-file or OUTPOST_HUB_OWNER_KEY)")
	}
	if !c.rlog.IsLeader() {
		return nil
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if key == nil {
		if err := c.h.SetOwnerKey(actx, c.key); err != nil {
			c.log.Warn("record the owner key in the cluster", "err", err)
		}
	}
	self := synchub.NodeInfo{ID: c.cfg.NodeID, Raft: c.node.Addr(), API: c.api}
	nodes, _ := fsm.Nodes()
	if !slices.Contains(nodes, self) {
		if err := c.h.SetNode(actx, self); err != nil {
			c.log.Warn("record this node's address in the cluster", "err", err)
			return nil
		}
	}
	c.pruneNodes(actx, nodes)
	if c.migrating.Load() {
		// Not actx: a large state takes longer than 5 s to snapshot, and a
		// snapshot cut short is kept with its trailing logs, so each retry
		// would find nothing new to snapshot and joins would wait forever.
		c.migrate(ctx)
	}
	return nil
}

// pruneNodes forgets the records of nodes that left the configuration a
// minute ago or more (a leader that removed itself leaves its record
// behind; a node being added has its record before it is a voter).
func (c *clusterRun) pruneNodes(ctx context.Context, nodes []synchub.NodeInfo) {
	members, err := c.node.Members()
	if err != nil {
		return
	}
	in := map[string]bool{}
	for _, m := range members {
		in[m.ID] = true
	}
	if c.absent == nil {
		c.absent = map[string]time.Time{}
	}
	for _, n := range nodes {
		if in[n.ID] {
			delete(c.absent, n.ID)
			continue
		}
		since, seen := c.absent[n.ID]
		if !seen {
			c.absent[n.ID] = time.Now()
			continue
		}
		if time.Since(since) >= time.Minute {
			if err := c.h.RemoveNode(ctx, n.ID); err == nil {
				delete(c.absent, n.ID)
				c.log.Info("forgot the address of a node that left the cluster", "node_id", n.ID)
			}
		}
	}
}

// migrate puts a single hub's state, which no log entry holds, into a
// snapshot and drops the log before it: a node that joins then receives
// the whole state.
func (c *clusterRun) migrate(ctx context.Context) {
	if err := c.node.SnapshotCompact(ctx); err != nil {
		c.log.Warn("snapshot the single hub's state for the cluster: retrying", "err", err)
		return
	}
	if err := os.Remove(filepath.Join(c.cfg.DataDir, raftDir, migratingFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.Warn("remove the migration mark (the next start snapshots again)", "err", err)
	}
	c.migrating.Store(false)
	c.log.Info("the single hub's state is now the cluster's first snapshot: nodes can join")
}

func (c *clusterRun) close() error {
	if c.node == nil {
		return nil
	}
	return c.node.Close()
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeHubError(w http.ResponseWriter, err error) {
	if errors.Is(err, synchub.ErrNotLeader) {
		w.Header().Set("Retry-After", "1")
		protocol.WriteError(w, 503, "NotLeader", err.Error())
		return
	}
	protocol.WriteError(w, 500, "InternalServerError", err.Error())
}
