// Package hub composes `outpost hub`: the hub's store and service
// (sync/hub) behind an HTTP(S) listener, and the owner connection string.
package hub

import (
	"context"
	"crypto/tls"
	"encoding/base64"
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
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/certs"
	"github.com/outpost-edge/outpost/cmd/internal/httpserver"
	"github.com/outpost-edge/outpost/cmd/internal/huburl"
	"github.com/outpost-edge/outpost/cmd/internal/secret"
	"github.com/outpost-edge/outpost/cmd/internal/webui"
	"github.com/outpost-edge/outpost/store/identity/sas"
	synchub "github.com/outpost-edge/outpost/sync/hub"
)

// Defaults of flags.
const (
	DefaultMaxImageMiB     = synchub.DefaultMaxImageSize >> 20 // --max-image-size
	DefaultMaxLinkRequests = synchub.DefaultMaxLinkRequests    // --max-link-requests
	DefaultRequestTimeout  = synchub.DefaultRequestDeadline    // --request-timeout
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

	// A cluster node (cluster.go): its id, raft address, and a node of
	// the cluster to join (empty on the first node).
	NodeID, Raft, Join string
	// RaftAdvertise is the raft address the other nodes dial, when not
	// --raft itself (a NAT, a proxy in front of the port); empty: --raft.
	RaftAdvertise string
	// Raft's log compaction (zero: hashicorp/raft's defaults).
	TrailingLogs, SnapshotThreshold uint64
	SnapshotInterval                time.Duration

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
	ownerFile    = "owner.connection-string"
	hostNameFile = "hostname" // the HostName of the last start
)

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
	host := cfg.Hostname
	if cfg.clustered() {
		if err := cfg.checkCluster(); err != nil {
			return err
		}
		if cfg.Join != "" && cfg.OwnerKey == "" {
			if _, err := os.Stat(filepath.Join(cfg.DataDir, ownerFile)); err != nil {
				return errors.New("a joining node needs the cluster's owner key: --owner-key-file F, env OUTPOST_HUB_OWNER_KEY or owner-key in --config (the first node wrote it to <data>/owner.connection-string)")
			}
		}
	}
	if host == "" {
		host = hostFor(ln.Addr().(*net.TCPAddr))
	}
	if err := recordHostName(cfg.DataDir, host, cfg.Logger); err != nil {
		return err
	}
	key, err := ownerKey(cfg, host)
	if err != nil {
		return err
	}
	var cr *clusterRun
	if cfg.clustered() {
		cr = &clusterRun{cfg: cfg, key: key, log: cfg.Logger}
		if cr.ca, err = clusterCA(ctx, cfg, key); err != nil {
			return err
		}
		cr.peer = peerClient(cfg.DataDir)
	}
	h, err := synchub.Open(ctx, filepath.Join(cfg.DataDir, "store"), synchub.Options{HostName: host, OwnerKey: key, Logger: cfg.Logger, Retention: cfg.Retention,
		ImageDir: filepath.Join(cfg.DataDir, "images"), MaxImageSize: cfg.MaxImageMiB << 20,
		MaxLinkRequests: cfg.MaxLinkRequests, RequestDeadline: cfg.RequestTimeout, Clustered: cr != nil})
	if err != nil {
		return err
	}
	defer h.Close()
	if cr != nil {
		defer func() { _ = cr.close() }() // raft stops before the store closes
	}
	tlsCfg, caPath, err := serverTLS(cfg, host)
	if err != nil {
		return err
	}
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	// localhost for an unspecified address: a URL clients can use, and a
	// name the hub's own certificate covers.
	url := scheme + "://" + hostFor(ln.Addr().(*net.TCPAddr))
	mux := http.NewServeMux()
	mux.Handle("/ui/", webui.NewHub(webui.HubOptions{Hub: h, OwnerKey: key, Secure: tlsCfg != nil, Logger: cfg.Logger}))
	mux.Handle("/", h.Handler())
	var handler http.Handler = mux
	if cr != nil {
		cr.h, cr.api = h, url
		if err := cr.openNode(ctx); err != nil {
			return err
		}
		cr.handle(mux)
		handler = h.Forward(mux, cr.forwardOptions())
	}
	srv := httpserver.New(handler, httpserver.Options{Logger: cfg.Logger})
	if tlsCfg != nil {
		srv.TLSConfig = tlsCfg
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	if caPath != "" {
		fmt.Fprintf(cfg.Stdout, "hub CA %s (edges and the CLI trust it with --hub-ca)\n", caPath)
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	rd := Ready{URL: url, HostName: host, PID: os.Getpid(), CA: caPath}
	if cr != nil {
		rd.NodeID, rd.Raft = cfg.NodeID, cr.node.Addr()
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go cr.maintain(cctx, errc)
		if cfg.Join != "" {
			go cr.joinCluster(cctx)
		}
	}
	ready, _ := json.Marshal(rd)
	if err := secret.WritePublic(filepath.Join(cfg.DataDir, "ready.json"), ready); err != nil {
		return err
	}
	fmt.Fprintf(cfg.Stdout, "hub listening on %s\n", url)
	if cr != nil {
		fmt.Fprintf(cfg.Stdout, "hub node %s raft %s\n", cfg.NodeID, cr.node.Addr())
	}
	fmt.Fprintf(cfg.Stdout, "hub dashboard %s/ui/ (log in with the owner connection string)\n", url)
	select {
	case <-ctx.Done():
		cfg.Logger.Info("hub stopping")
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			h.Stop()
			_ = srv.Close()
			return err
		}
	}
	h.Stop()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	_ = os.Remove(filepath.Join(cfg.DataDir, "ready.json"))
	return nil
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
