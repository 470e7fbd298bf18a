// Package edge composes `outpost edge`: the store, the identity cache, the
// twin store, the route table and the MQTT broker, with listeners and a
// local API. It is wiring only; every piece lives in its own package.
package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/outpost-edge/outpost/broker"
	"github.com/outpost-edge/outpost/broker/route"
	"github.com/outpost-edge/outpost/cmd/internal/certs"
	"github.com/outpost-edge/outpost/cmd/internal/huburl"
	"github.com/outpost-edge/outpost/cmd/internal/machine"
	"github.com/outpost-edge/outpost/cmd/internal/secret"
	"github.com/outpost-edge/outpost/store/disk"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/store/wallclock"
	"github.com/outpost-edge/outpost/supervisor"
	"github.com/outpost-edge/outpost/sync/downstream"
	"github.com/outpost-edge/outpost/sync/upstream"
)

// Config is everything `outpost edge` is told on its command line.
type Config struct {
	DataDir          string
	ConnectionString string
	HubURL           string
	HubCA            string // PEM file of the CA that signed the hub's certificate
	InsecureLink     bool   // plain HTTP to a hub that is not on loopback (--insecure-link), warned about on every start
	ClientCA         string // PEM file of the CAs that sign certificateAuthority leaf devices' certificates
	Hostname         string
	MQTT, MQTTS, WS  string
	API              string
	Downstream       string // serve the edge link to child edges here (nested edges)
	TLSCert, TLSKey  string
	Deployment       string        // a deployment manifest ($edgeHub routes, $edgeAgent modules) for a standalone edge
	ModuleBackoff    time.Duration // first restart delay of a failed module (doubles up to 5 minutes)
	Identities       string        // a JSON array of identities to add to the cache
	// MachineIDFile names the file holding this machine's id (default
	// /etc/machine-id, then /var/lib/dbus/machine-id, then an id recorded
	// at first start in the user's config directory). A data directory
	// started on another machine id takes a new instance id.
	MachineIDFile string
	Durability    kv.Durability
	// MaxQueueBytes caps all queues' record bytes; 0: MaxQueueShare percent
	// of the data filesystem (DefaultQueueShare when 0 too).
	MaxQueueBytes int64
	MaxQueueShare int
	Overflow      queue.Overflow // of a full queue when the deployment sets none
	MQTTLimits    broker.Limits  // connection hygiene of the MQTT listeners; zero fields take the defaults
	MaxImageSize  int64          // the largest module image the edge downloads (bytes; 0: upstream.DefaultMaxImageSize)
	// MemoryBudget is the memory the edge may use (--memory-budget,
	// bytes); 0: the memory limit of its cgroup, if any
	// (cmd/internal/membudget sizes the Go limit and Badger from it).
	MemoryBudget int64
	// Cgroups is where the cgroup limit is read: a view of the root
	// filesystem (/proc/self/cgroup, /sys/fs/cgroup); nil: os.DirFS("/").
	Cgroups fs.FS
	Logger  *slog.Logger
	Stdout  io.Writer
	Stderr  io.Writer // for a line people see when the hub refuses the edge's credentials (nil: the log only)
	// ModuleUIDs is the range of uids an edge running as root gives its
	// modules, one each (default supervisor.DefaultModuleUIDs).
	ModuleUIDs supervisor.UIDRange
}

// Ready is written to <data>/ready.json once the listeners accept clients.
type Ready struct {
	MQTT  string `json:"mqtt,omitempty"`
	MQTTS string `json:"mqtts,omitempty"`
	WS    string `json:"ws,omitempty"`
	API   string `json:"api,omitempty"`
	// Downstream is where child edges reach this edge's link (--downstream).
	Downstream string `json:"downstream,omitempty"`
	CA         string `json:"ca,omitempty"`
	PID        int    `json:"pid"`
	// Reloads counts SIGHUP reloads of the deployment, taken or rejected.
	Reloads int `json:"reloads"`
	// What the edge runs with, for `outpost edge check` (never a key).
	DeviceID string `json:"deviceId,omitempty"`
	HubURL   string `json:"hubUrl,omitempty"` // "off": standalone
	HubCA    string `json:"hubCa,omitempty"`
	ClientCA string `json:"clientCa,omitempty"`
	TLSCert  string `json:"tlsCert,omitempty"`
	TLSKey   string `json:"tlsKey,omitempty"`
}

// edge holds the opened pieces.
type edge struct {
	// presence tracks the broker's clients for the hub (nil standalone).
	presence *presence
	cfg      Config
	cs       sas.ConnString
	disk     *disk.Monitor
	db       *kv.DB
	clock    *wallclock.Clock
	queues   *queue.Store
	twins    *twin.Store
	ids      *identity.Cache
	broker   *broker.Broker
	link     *upstream.Link // nil for a standalone edge
	// downstream serves child edges (nil without --downstream).
	downstream *downstream.Server
	sup        *supervisor.Supervisor
	// reports holds the supervisor's latest report for the $edgeAgent twin.
	reports chan supervisor.Report
	hubURL  string   // as given: one URL, or a cluster's nodes comma-separated
	hubURLs []string // hubURL parsed
	// isolation is the status's moduleIsolation (moduleIsolation).
	isolation string

	reloadMu sync.Mutex // SIGHUP and the $edgeHub twin both reload routes
	// overflow is the policy of a full queue whose route sets none: the
	// deployment's, else --overflow (the status's disk.overflow).
	overflow atomic.Value
	mem      memory // the budget and the sizes it set
	ready    Ready
}

// Run starts the edge and serves until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	mem, err := planMemory(cfg)
	if err != nil {
		return err
	}
	mem.apply(cfg.Logger)
	// Module programs are started from their own working directories: a
	// relative --data (the README's ./edge) would make every path into the
	// data directory point nowhere.
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("--data %s: %w", cfg.DataDir, err)
	}
	cfg.DataDir = dir
	e := &edge{cfg: cfg, mem: mem}
	defer e.close()
	if err := e.open(ctx); err != nil {
		return err
	}
	if err := e.broker.Start(); err != nil {
		return err
	}
	api, err := e.serveAPI()
	if err != nil {
		return err
	}
	if api != nil {
		defer api.Close()
	}
	down, err := e.serveDownstream()
	if err != nil {
		return err
	}
	if down != nil {
		defer down.Close()
	}
	if err := e.announce(); err != nil {
		return err
	}
	if e.link != nil {
		linkDone := make(chan struct{})
		lctx, stop := context.WithCancel(ctx)
		go func() {
			defer close(linkDone)
			_ = e.link.Run(lctx)
		}()
		defer func() { stop(); <-linkDone }()
	} else {
		// Standalone: no other replica holds the twins, so every tombstone
		// can go once written; the link runs GC otherwise.
		gcDone := make(chan struct{})
		gctx, stopGC := context.WithCancel(ctx)
		go func() {
			defer close(gcDone)
			_ = e.twins.RunGC(gctx, e.twinMembers) // no hub; child edges, if any
		}()
		defer func() { stopGC(); <-gcDone }()
	}
	// Modules stop before the link and the broker (deferred calls run in
	// reverse order).
	sctx, stopModules := context.WithCancel(context.Background())
	waitModules := e.runSupervisor(sctx)
	defer func() { stopModules(); waitModules() }()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			e.reload()
		case <-ctx.Done():
			cfg.Logger.Info("edge stopping")
			return nil
		}
	}
}

// reload reads the deployment again (SIGHUP). A deployment whose routes or
// policy do not parse is rejected with the reason, and the routes and
// policy in force stay.
func (e *edge) reload() {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	defer func() {
		e.ready.Reloads++
		if err := e.writeReady(); err != nil {
			e.cfg.Logger.Warn("ready file", "err", err)
		}
	}()
	c, err := e.routes()
	if err != nil {
		e.cfg.Logger.Error("deployment rejected; the previous routes, policy and MQTT accounts stay in force", "err", err)
		return
	}
	e.applyRoutes(c)
	e.cfg.Logger.Info("deployment reloaded", "routes", len(c.routes.Routes))
	e.applyAgent()
}

// writeReady replaces ready.json atomically, so readers never see half.
func (e *edge) writeReady() error {
	data, _ := json.Marshal(e.ready)
	return secret.WritePublic(filepath.Join(e.cfg.DataDir, "ready.json"), data)
}

func (e *edge) open(ctx context.Context) error {
	cs, err := sas.ParseConnString(e.cfg.ConnectionString)
	if err != nil {
		return fmt.Errorf("edge connection string: %w", err)
	}
	if cs.DeviceID == "" || cs.ModuleID != "" || len(cs.SharedAccessKey) == 0 {
		return errors.New("edge connection string: want the edge device's (HostName, DeviceId, SharedAccessKey)")
	}
	e.cs = cs
	if err := e.setHubURL(); err != nil {
		return err
	}
	if err := os.MkdirAll(e.cfg.DataDir, 0o700); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(e.cfg.DataDir, "ready.json")) // from a run that was killed
	log := e.cfg.Logger
	// The machine id first: a wrong --machine-id-file is refused before
	// anything is created in the data directory.
	machineID, err := e.machineID()
	if err != nil {
		return err
	}
	if err := e.openDisk(); err != nil {
		return err
	}
	kvo := e.kvOptions()
	kvo.Space = e.disk
	if e.db, err = kv.Open(filepath.Join(e.cfg.DataDir, "store"), kvo); err != nil {
		return err
	}
	e.disk.Check() // Badger made a new write-ahead log and value-log file: back them now
	if err := e.openClock(ctx); err != nil {
		return err
	}
	if e.queues, err = queue.Open(ctx, e.db, queue.Options{Logger: log, Space: e.disk, Now: e.clock.Now}); err != nil {
		return err
	}
	if e.twins, err = twin.Open(ctx, e.db, twin.Options{Role: twin.Edge, Name: cs.DeviceID, Machine: machineID, Logger: log,
		Now: func() int64 { return e.clock.Now().UnixMilli() }}); err != nil {
		return err
	}
	log.Info("store opened", "instance", e.twins.Replica())
	if e.ids, err = identity.Open(ctx, e.db, identity.Options{Logger: log}); err != nil {
		return err
	}
	if err := e.loadIdentities(ctx); err != nil {
		return err
	}
	c, err := e.routes()
	if err != nil {
		return err
	}
	e.setQueueLimits(c.routes)
	if err := e.newBroker(c); err != nil {
		return err
	}
	if err := e.newDownstream(); err != nil {
		return err
	}
	if err := e.newLink(); err != nil {
		return err
	}
	return e.newSupervisor()
}

// setHubURL picks the hub's URL: --hub-url, else https://<HostName> (http
// on loopback). Plain HTTP to a hub that is not on loopback is refused
// unless --insecure-link accepts the risk, which is logged on every start.
func (e *edge) setHubURL() error {
	switch e.cfg.HubURL {
	case "off", "none":
		return nil
	case "":
		e.hubURL = huburl.Default(e.cs.HostName)
	default:
		e.hubURL = e.cfg.HubURL
	}
	urls, plain, err := huburl.CheckList(e.hubURL, e.cfg.InsecureLink)
	if errors.Is(err, huburl.ErrPlainRemote) {
		return fmt.Errorf("--hub-url: %w: anyone on the network path could read every key the hub sends and push deployments; "+
			"use https:// (the default for a remote hub; --hub-ca F when the hub's CA is your own), or pass --insecure-link to accept the risk", err)
	}
	if err != nil {
		return fmt.Errorf("--hub-url: %w", err)
	}
	e.hubURLs = urls
	if plain {
		e.cfg.Logger.Warn("INSECURE LINK: plain HTTP to a hub that is not on this machine (--insecure-link): anyone on the network path can read "+
			"the keys the hub sends, push deployments and make the edge drop its backlog; serve the hub over TLS and drop --insecure-link", "hub", e.hubURL)
	} else if e.cfg.InsecureLink {
		e.cfg.Logger.Warn("--insecure-link is set but not needed (the link is TLS or loopback): remove it", "hub", e.hubURL)
	}
	return nil
}

// machineID names this machine for the twin store, which takes a new
// instance id when its data directory moved to another machine.
func (e *edge) machineID() (string, error) {
	id, source, err := machine.ID(machine.Options{File: e.cfg.MachineIDFile, Fallback: machine.DefaultFallback()})
	if err != nil && !errors.Is(err, machine.ErrFallback) {
		return "", err
	}
	if id == "" {
		e.cfg.Logger.Warn("no machine id (/etc/machine-id, --machine-id-file): a copy of this data directory on another machine will share its instance id", "err", err)
	} else {
		e.cfg.Logger.Debug("machine id", "source", source)
	}
	return id, nil
}

// loadIdentities adds the --identities file to the cache, and the edge's
// own identity from its connection string if the cache lacks it.
func (e *edge) loadIdentities(ctx context.Context) error {
	var ids []identity.Identity
	if e.cfg.Identities != "" {
		data, err := os.ReadFile(e.cfg.Identities)
		if err != nil {
			return fmt.Errorf("identities: %w", err)
		}
		if ids, err = identity.ParseJSONList(data); err != nil {
			return fmt.Errorf("identities file %s: %w", e.cfg.Identities, err)
		}
	}
	if _, ok, _ := e.ids.Get(e.cs.DeviceID); !ok && !containsID(ids, e.cs.DeviceID) {
		ids = append(ids, identity.Identity{DeviceID: e.cs.DeviceID, Status: identity.Enabled, Edge: true,
			Auth: identity.Auth{Type: identity.AuthSAS, PrimaryKey: e.cs.SharedAccessKey}})
	}
	if len(ids) == 0 {
		return nil
	}
	return e.ids.Put(ctx, ids...)
}

func containsID(ids []identity.Identity, id string) bool {
	for _, i := range ids {
		if i.ID() == id {
			return true
		}
	}
	return false
}

// routes reads $edgeHub's routes and authorization policy: from the
// $edgeHub twin when the hub has delivered a deployment, else from the
// deployment manifest, if any.
func (e *edge) routes() (edgeHubConfig, error) {
	if desired, ok := e.edgeHubDesired(); ok {
		return parseEdgeHub(desired, "the $edgeHub twin")
	}
	if e.cfg.Deployment == "" {
		return edgeHubConfig{routes: route.DefaultConfig()}, nil
	}
	m, err := e.readManifest()
	if err != nil {
		return edgeHubConfig{}, err
	}
	desired := m["$edgeHub"]["properties.desired"]
	if desired == nil {
		return edgeHubConfig{routes: route.DefaultConfig()}, nil
	}
	return parseEdgeHub(desired, "deployment "+e.cfg.Deployment)
}

// edgeHubConfig is what the broker takes from $edgeHub's desired
// properties: routes, the free-topic policy and the local MQTT accounts.
type edgeHubConfig struct {
	routes   *route.Config
	policy   *broker.Policy
	accounts *broker.Accounts
}

func parseEdgeHub(desired []byte, from string) (edgeHubConfig, error) {
	cfg, err := route.ParseConfig(desired)
	if err != nil {
		return edgeHubConfig{}, fmt.Errorf("%s: $edgeHub routes: %w", from, err)
	}
	policy, err := broker.ParsePolicy(desired)
	if err != nil {
		return edgeHubConfig{}, fmt.Errorf("%s: $edgeHub: %w", from, err)
	}
	accounts, err := broker.ParseAccounts(desired)
	if err != nil {
		return edgeHubConfig{}, fmt.Errorf("%s: $edgeHub: %w", from, err)
	}
	return edgeHubConfig{routes: cfg, policy: policy, accounts: accounts}, nil
}

func (e *edge) newBroker(hubCfg edgeHubConfig) error {
	var tlsCfg *tls.Config
	if e.cfg.MQTTS != "" || e.cfg.WS != "" {
		var err error
		if tlsCfg, e.ready.CA, err = e.serverTLS(); err != nil {
			return err
		}
	}
	hosts := e.hostNames()
	var roots *x509.CertPool
	if e.cfg.ClientCA != "" {
		var err error
		if roots, err = certs.LoadCAs(e.cfg.ClientCA, "--client-ca"); err != nil {
			return err
		}
	}
	if e.hubURL != "" {
		e.presence = newPresence(e.presenceClients, e.clock.Now) // before the broker calls clientsChanged
	}
	b, err := broker.New(broker.Options{
		EdgeID: e.cs.DeviceID, Queues: e.queues, Twins: e.twins, DB: e.db, Routes: hubCfg.routes, Policy: hubCfg.policy, Accounts: hubCfg.accounts,
		Auth: broker.CacheAuth{IDs: e.ids, EdgeID: e.cs.DeviceID, Hosts: hosts, Roots: roots, Now: e.clock.Now},
		TCP:  e.cfg.MQTT, TLS: e.cfg.MQTTS, WS: e.cfg.WS, TLSConfig: tlsCfg, Logger: e.cfg.Logger,
		StandaloneTwins: e.hubURL == "", Overflow: e.cfg.Overflow,
		Generation: e.generation, Now: e.clock.Now, Limits: e.cfg.MQTTLimits, OnClients: e.clientsChanged,
	})
	if err != nil {
		return err
	}
	e.broker = b
	// The link's pull, a deployment's module identities and --identities
	// all change the cache: each change rechecks the live sessions of the
	// identities it touched.
	e.ids.Watch(b.IdentitiesChanged)
	return nil
}

// serverTLS serves --tls-cert, or else a certificate from the local CA in
// <data>/certs, renewed before it expires; caPath names that CA.
func (e *edge) serverTLS() (cfg *tls.Config, caPath string, err error) {
	cfg = &tls.Config{ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	if e.cfg.TLSCert != "" || e.cfg.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(e.cfg.TLSCert, e.cfg.TLSKey)
		if err != nil {
			return nil, "", fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
		return cfg, "", nil
	}
	ca, err := certs.Open(certs.Options{Dir: filepath.Join(e.cfg.DataDir, "certs"), Hosts: certs.Hosts(e.hostNames()...),
		Name: "Outpost edge local CA", Now: e.clock.Now, Logger: e.cfg.Logger})
	if err != nil {
		return nil, "", err
	}
	cfg.GetCertificate = ca.GetCertificate
	return cfg, ca.CAPath(), nil
}

// hostNames are the names this edge answers to: its hostname, loopback,
// and the hub's HostName (tokens for the hub are valid here too).
func (e *edge) hostNames() []string {
	names := []string{}
	if e.cfg.Hostname != "" {
		names = append(names, e.cfg.Hostname)
	}
	if h, err := os.Hostname(); err == nil {
		names = append(names, h)
	}
	names = append(names, "localhost", "127.0.0.1", "::1")
	if host, _, err := net.SplitHostPort(e.cs.HostName); err == nil {
		names = append(names, host)
	}
	return append(names, e.cs.HostName)
}

// announce prints the addresses and "edge ready", and writes ready.json.
func (e *edge) announce() error {
	for _, l := range []struct {
		name string
		dst  *string
	}{{"tcp", &e.ready.MQTT}, {"tls", &e.ready.MQTTS}, {"ws", &e.ready.WS}} {
		if a := e.broker.Addr(l.name); a != nil {
			*l.dst = a.String()
		}
	}
	out := e.cfg.Stdout
	if e.ready.CA != "" {
		fmt.Fprintf(out, "edge CA certificate: %s (leaf devices and modules trust it)\n", e.ready.CA)
	}
	for _, l := range []struct{ name, addr string }{{"mqtt", e.ready.MQTT}, {"mqtts", e.ready.MQTTS}, {"ws", e.ready.WS}, {"api", e.ready.API}} {
		if l.addr != "" {
			fmt.Fprintf(out, "%s listening on %s\n", l.name, l.addr)
		}
	}
	e.ready.PID = os.Getpid()
	e.recordConfig()
	if err := e.writeReady(); err != nil {
		return err
	}
	fmt.Fprintln(out, "edge ready")
	return nil
}

// recordConfig puts in ready.json what `outpost edge check` needs to know
// of the edge's configuration: files by absolute path, no key.
func (e *edge) recordConfig() {
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil && p != "" {
			return a
		}
		return p
	}
	r := &e.ready
	r.DeviceID, r.HubURL = e.cs.DeviceID, e.hubURL
	if r.HubURL == "" {
		r.HubURL = "off"
	}
	r.HubCA, r.ClientCA, r.TLSCert, r.TLSKey = abs(e.cfg.HubCA), abs(e.cfg.ClientCA), abs(e.cfg.TLSCert), abs(e.cfg.TLSKey)
}

func (e *edge) close() {
	if e.broker != nil {
		_ = e.broker.Close()
	}
	if e.queues != nil {
		_ = e.queues.Close()
	}
	if e.clock != nil {
		_ = e.clock.Close()
	}
	if e.db != nil {
		_ = e.db.Close()
	}
	if e.disk != nil {
		_ = e.disk.Close()
	}
	_ = os.Remove(filepath.Join(e.cfg.DataDir, "ready.json"))
}
