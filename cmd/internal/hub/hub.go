// Package hub composes `outpost hub`: the hub's store and service
// (sync/hub) behind an HTTP(S) listener, and the owner connection string.
package hub

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/certs"
	"github.com/outpost-edge/outpost/cmd/internal/httpserver"
	"github.com/outpost-edge/outpost/cmd/internal/huburl"
	"github.com/outpost-edge/outpost/cmd/internal/secret"
	"github.com/outpost-edge/outpost/cmd/internal/webui"
	"github.com/outpost-edge/outpost/store/identity/sas"
	synchub "github.com/outpost-edge/outpost/sync/hub"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// Defaults of flags.
const (
	DefaultTrailingLogs      = 1024                              // --raft-trailing-logs
	DefaultSnapshotBytes     = 512 << 20                         // --raft-snapshot-size (MiB)
	DefaultSnapshotThreshold = 8192                              // --raft-snapshot-threshold
	DefaultSnapshotInterval  = 2 * time.Minute                   // --raft-snapshot-interval
	DefaultMaxImageMiB       = synchub.DefaultMaxImageSize >> 20 // --max-image-size
	DefaultMaxLinkRequests   = synchub.DefaultMaxLinkRequests    // --max-link-requests
	DefaultRequestTimeout    = synchub.DefaultRequestDeadline    // --request-timeout
)

// Config is what `outpost hub` is told on its command line.
type Config struct {
	DataDir         string
	Listen          string
	Hostname        string
	TLSCert, TLSKey string
	OwnerKey        string // base64; empty: generated once and kept in <data>/owner.connection-string
	Retention       time.Duration
	MaxImageMiB     int64         // largest module image the store takes (DefaultMaxImageMiB)
	MaxLinkRequests int           // link requests in flight per edge (DefaultMaxLinkRequests)
	RequestTimeout  time.Duration // per REST request, streams exempt (DefaultRequestTimeout)
	// Routes is a routes file (TOML): endpoints (NATS JetStream, Kafka,
	// webhooks) and the routes that send the event log to them
	// (sync/hub/egress); "" routes nothing.
	Routes string

	// A cluster node (cluster.go): its id, raft address, and a node of
	// the cluster to join (empty on the first node).
	NodeID, Raft, Join string
	// RaftAdvertise is the raft address the other nodes dial, when not
	// --raft itself (a NAT, a proxy in front of the port); empty: --raft.
	RaftAdvertise string
	// Raft's log compaction (zero: the defaults below): a snapshot every
	// SnapshotThreshold entries or SnapshotBytes of commands, whichever
	// comes first, keeping TrailingLogs entries after it.
	TrailingLogs, SnapshotThreshold uint64
	SnapshotInterval                time.Duration
	SnapshotBytes                   int64
	// RaftPeerAddress, for tests only (no flag), says where this node
	// dials a peer's raft port (false: the address the cluster recorded),
	// so that a test can put a proxy between each pair of nodes
	// (cluster.Options.PeerAddress).
	RaftPeerAddress func(id string) (string, bool)
	// staleReads, set only by a test, makes every node answer GETs from
	// its own state, unconfirmed: the broken hub the linearizability
	// check must catch.
	staleReads bool

	Logger *slog.Logger
	Stdout io.Writer
}

// Ready is written to <data>/ready.json once the hub serves.
type Ready struct {
	URL      string `json:"url"`
	HostName string `json:"hostName"`
	PID      int    `json:"pid"`
	CA       string `json:"ca,omitempty"` // the CA the hub made for itself, if it did
	NodeID   string `json:"nodeId,omitempty"`
	Raft     string `json:"raft,omitempty"`
}

const (
	ownerFile       = "owner.connection-string"
	hostNameFile    = "hostname"    // the HostName of the last start
	incarnationFile = "incarnation" // of the hub's twin replica; a cluster's, handed over on join
)

// incarnation is the hub's twin replica incarnation: made at its first
// start (a joining node received its cluster's), so a hub made anew, even
// with the same owner key, is a new replica to the edges.
func incarnation(dir string) (string, error) {
	path := filepath.Join(dir, incarnationFile)
	data, err := os.ReadFile(path)
	if err == nil {
		if inc := strings.TrimSpace(string(data)); inc != "" {
			return inc, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	inc := hex.EncodeToString(b)
	return inc, secret.WritePublic(path, []byte(inc+"\n"))
}

// Run serves the hub until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(cfg.DataDir, "ready.json"))
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", cfg.Listen, err)
	}
	defer ln.Close()
	r := &hubRun{cfg: cfg}
	var routes *routesFile
	if cfg.Routes != "" {
		if routes, err = readRoutes(cfg.Routes); err != nil {
			return err
		}
	}
	if err := r.identity(ctx, ln); err != nil {
		return err
	}
	if err := r.open(ctx); err != nil {
		return err
	}
	defer r.close()
	if routes != nil {
		rt, err := routes.router(r.h, r.inc, cfg.Logger)
		if err != nil {
			return err
		}
		defer runRoutes(ctx, rt, r.h)() // stopped before the hub closes
	}
	srv, ln, err := r.server(ctx, ln)
	if err != nil {
		return err
	}
	return r.serve(ctx, srv, ln)
}

// hubRun is one run of `outpost hub`.
type hubRun struct {
	cfg    Config
	host   string
	key    []byte
	cr     *clusterRun // nil for a single hub
	h      *synchub.Hub
	inc    string // the hub's twin replica incarnation
	url    string
	caPath string
}

// identity settles the hub's name, its owner key and, for a cluster node,
// the cluster CA (fetched through --join on a new node).
func (r *hubRun) identity(ctx context.Context, ln net.Listener) error {
	cfg := r.cfg
	if cfg.clustered() {
		if err := cfg.checkCluster(); err != nil {
			return err
		}
		if ln.Addr().(*net.TCPAddr).IP.IsUnspecified() {
			// The API's URL is where the other nodes forward requests:
			// localhost would send them back to themselves.
			return fmt.Errorf("--listen %s: a cluster node's API address is where the other nodes forward requests: listen on an address they reach (e.g. 10.0.0.1:8443), not on every interface", cfg.Listen)
		}
		if cfg.Join != "" && cfg.OwnerKey == "" {
			if _, err := os.Stat(filepath.Join(cfg.DataDir, ownerFile)); err != nil {
				return errors.New("a joining node needs the cluster's owner key: --owner-key-file F, env OUTPOST_HUB_OWNER_KEY or owner-key in --config (the first node wrote it to <data>/owner.connection-string)")
			}
		}
	}
	r.host = cmp.Or(cfg.Hostname, hostFor(ln.Addr().(*net.TCPAddr)))
	if err := recordHostName(cfg.DataDir, r.host, cfg.Logger); err != nil {
		return err
	}
	var err error
	if r.key, err = ownerKey(cfg, r.host); err != nil {
		return err
	}
	if !cfg.clustered() {
		return nil
	}
	r.cr = &clusterRun{cfg: cfg, key: r.key, log: cfg.Logger}
	if r.cr.ca, err = clusterCA(ctx, cfg, r.key); err != nil {
		return err
	}
	r.cr.peer = peerClient(cfg.DataDir)
	return nil
}

// open opens the hub's store and service.
func (r *hubRun) open(ctx context.Context) error {
	cfg := r.cfg
	inc, err := incarnation(cfg.DataDir)
	if err != nil {
		return err
	}
	r.inc = inc
	r.h, err = synchub.Open(ctx, filepath.Join(cfg.DataDir, "store"), synchub.Options{Incarnation: inc, HostName: r.host, OwnerKey: r.key,
		Logger: cfg.Logger, Retention: cfg.Retention, ImageDir: filepath.Join(cfg.DataDir, "images"), MaxImageSize: cfg.MaxImageMiB << 20,
		MaxLinkRequests: cfg.MaxLinkRequests, RequestDeadline: cfg.RequestTimeout, Clustered: r.cr != nil, PeerTransport: peerTransport(r.cr)})
	return err
}

// close stops raft, then the store.
func (r *hubRun) close() {
	if r.cr != nil {
		_ = r.cr.close()
	}
	_ = r.h.Close()
}

// server makes the HTTP(S) server of the REST API, the link, the
// dashboard and, on a cluster node, the membership endpoints (starting the
// raft node: the API's URL is the node's address for the others).
func (r *hubRun) server(ctx context.Context, ln net.Listener) (*http.Server, net.Listener, error) {
	cfg := r.cfg
	tlsCfg, caPath, err := serverTLS(cfg, r.host)
	if err != nil {
		return nil, nil, err
	}
	r.caPath = caPath
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	// localhost for an unspecified address: a URL clients can use, and a
	// name the hub's own certificate covers.
	r.url = scheme + "://" + hostFor(ln.Addr().(*net.TCPAddr))
	mux := http.NewServeMux()
	mux.Handle("/ui/", webui.NewHub(webui.HubOptions{Hub: r.h, OwnerKey: r.key, Secure: tlsCfg != nil, Logger: cfg.Logger}))
	mux.Handle("/", r.h.Handler())
	var handler http.Handler = mux
	if cr := r.cr; cr != nil {
		cr.h, cr.api = r.h, r.url
		if err := cr.openNode(ctx); err != nil {
			return nil, nil, err
		}
		cr.handle(mux)
		handler = r.h.Forward(mux, cr.forwardOptions())
	} else {
		mux.HandleFunc("/cluster/", func(w http.ResponseWriter, _ *http.Request) {
			protocol.WriteError(w, 404, "NotClustered", "this hub runs as one node, not a cluster: --node-id and --raft make it a cluster's first node (docs/operations.md, A hub cluster)")
		})
	}
	srv := httpserver.New(handler, httpserver.Options{Logger: cfg.Logger})
	if tlsCfg != nil {
		srv.TLSConfig = tlsCfg
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	return srv, ln, nil
}

// serve serves until ctx ends (or the server or the cluster fails), with
// ready.json written while it does.
func (r *hubRun) serve(ctx context.Context, srv *http.Server, ln net.Listener) error {
	cfg, cr := r.cfg, r.cr
	if r.caPath != "" {
		fmt.Fprintf(cfg.Stdout, "hub CA %s (edges and the CLI trust it with --hub-ca)\n", r.caPath)
	}
	errc := make(chan error, 3) // the server, maintain, joinCluster: none blocks
	go func() { errc <- srv.Serve(ln) }()
	rd := Ready{URL: r.url, HostName: r.host, PID: os.Getpid(), CA: r.caPath}
	if cr != nil {
		rd.NodeID, rd.Raft = cfg.NodeID, cr.node.Addr()
		// Ended and waited for before Run closes raft and the store.
		var wg sync.WaitGroup
		cctx, cancel := context.WithCancel(ctx)
		defer wg.Wait()
		defer cancel()
		wg.Go(func() { cr.maintain(cctx, errc) })
		if cfg.Join != "" {
			wg.Go(func() { cr.joinCluster(cctx, errc) })
		}
	}
	ready, _ := json.Marshal(rd)
	if err := secret.WritePublic(filepath.Join(cfg.DataDir, "ready.json"), ready); err != nil {
		return err
	}
	fmt.Fprintf(cfg.Stdout, "hub listening on %s\n", r.url)
	if cr != nil {
		fmt.Fprintf(cfg.Stdout, "hub node %s raft %s\n", cfg.NodeID, cr.node.Addr())
	}
	fmt.Fprintf(cfg.Stdout, "hub dashboard %s/ui/ (log in with the owner connection string)\n", r.url)
	select {
	case <-ctx.Done():
		cfg.Logger.Info("hub stopping")
		if cr != nil {
			cr.node.StepDown() // before the API stops: followers forward to the next leader at once
		}
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			r.h.Stop()
			_ = srv.Close()
			return err
		}
	}
	r.h.Stop()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	_ = os.Remove(filepath.Join(cfg.DataDir, "ready.json"))
	return nil
}

// peerTransport reaches the other nodes' APIs (nil for a single hub).
func peerTransport(cr *clusterRun) http.RoundTripper {
	if cr == nil {
		return nil
	}
	return cr.peer.Transport
}

// hostFor names the hub in connection strings: the listen address, with
// localhost for an unspecified host.
func hostFor(a *net.TCPAddr) string {
	if a.IP.IsUnspecified() {
		return net.JoinHostPort("localhost", fmt.Sprint(a.Port))
	}
	return a.String()
}

// recordHostName keeps the hub's HostName in its data directory and warns
// when it is not the one of the last start: every SAS token and connection
// string names the hub's host (the default is the --listen address, so a new
// port is a new name), and the hub refuses those made for another one.
func recordHostName(dir, host string, log *slog.Logger) error {
	path := filepath.Join(dir, hostNameFile)
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	prev := strings.TrimSpace(string(data))
	if prev == "" {
		// A data directory from before this record: the owner connection
		// string names the host of the last start.
		if cs, err := os.ReadFile(filepath.Join(dir, ownerFile)); err == nil {
			if c, err := sas.ParseConnString(string(cs)); err == nil {
				prev = c.HostName
			}
		}
	}
	if prev == host {
		return nil
	}
	if prev != "" {
		log.Warn("the hub's HostName is not the one of its last start: the connection strings and SAS tokens of every device, module "+
			"and edge made for the old name are refused (an edge's link gets 401); start the hub with --hostname "+prev+
			" to keep them, or give them new connection strings (outpost device connection-string ID)",
			"hostname", host, "previous_hostname", prev)
	}
	return secret.WritePublic(path, []byte(host+"\n"))
}

// ownerKey returns the owner policy's key: --owner-key, or the one kept in
// the owner connection string file (created with a new key on first start,
// rewritten with the current host name on later ones).
func ownerKey(cfg Config, host string) ([]byte, error) {
	if cfg.OwnerKey != "" {
		key, err := base64.StdEncoding.DecodeString(cfg.OwnerKey)
		if err != nil || len(key) == 0 {
			return nil, errors.New("--owner-key must be a base64 key")
		}
		return key, nil
	}
	path := filepath.Join(cfg.DataDir, ownerFile)
	var key []byte
	if data, err := os.ReadFile(path); err == nil {
		cs, err := sas.ParseConnString(string(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w (delete it to make a new owner key)", path, err)
		}
		key = cs.SharedAccessKey
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	} else {
		key = sas.GenerateKey()
	}
	cs := sas.ConnString{HostName: host, SharedAccessKeyName: "owner", SharedAccessKey: key}
	return key, secret.Write(path, []byte(cs.String()+"\n"))
}

// serverTLS returns the TLS configuration the hub serves with: --tls-cert,
// else, on an address other hosts can reach, a certificate from a CA the
// hub makes in <data>/certs (caPath), renewed before it expires. On a
// loopback address without --tls-cert the hub serves plain HTTP (nil).
func serverTLS(cfg Config, host string) (tlsCfg *tls.Config, caPath string, err error) {
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, "", fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, "", nil
	}
	if Loopback(cfg.Listen) {
		return nil, "", nil
	}
	ca, err := certs.Open(certs.Options{Dir: filepath.Join(cfg.DataDir, "certs"), Hosts: certHosts(cfg.Listen, host),
		Name: "Outpost hub local CA", Logger: cfg.Logger})
	if err != nil {
		return nil, "", err
	}
	return ca.TLSConfig(), ca.CAPath(), nil
}

// Loopback reports whether addr (host:port) is on 127.0.0.0/8, ::1 or
// localhost, decided without DNS. An unspecified host (":8443", 0.0.0.0)
// is not: other hosts reach it.
func Loopback(addr string) bool {
	_, _, err := net.SplitHostPort(addr)
	return err == nil && huburl.Loopback(addr)
}

// certHosts are the names the hub's own certificate covers: its host name,
// the listen host, the machine's name and loopback.
func certHosts(listen, hostName string) []string {
	strip := func(h string) string {
		if name, _, err := net.SplitHostPort(h); err == nil {
			return name
		}
		return h
	}
	names := []string{strip(hostName)}
	if l := strip(listen); l != "" && !net.ParseIP(l).IsUnspecified() {
		names = append(names, l)
	}
	if h, err := os.Hostname(); err == nil {
		names = append(names, h)
	}
	return certs.Hosts(append(names, "localhost", "127.0.0.1", "::1")...)
}
