package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/store/disk"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/store/ratelog"
	"github.com/outpost-edge/outpost/store/twin"
)

// Errors the API maps to HTTP statuses; match them with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrInvalid  = errors.New("invalid request")
	ErrOffline  = errors.New("device not connected")
	ErrTimeout  = errors.New("timed out")
	ErrFull     = errors.New("quota exceeded")
	// ErrPrecondition: an If-Match etag that is not the current one (412).
	ErrPrecondition = errors.New("precondition failed")
	// ErrConflict: the thing to create exists already (409).
	ErrConflict = errors.New("conflict")
	// ErrNoSpace: the hub's disk is below its reserve (507 Insufficient
	// Storage); an edge keeps its backlog and sends it again later.
	ErrNoSpace = errors.New("insufficient storage")
)

// Options configure a Hub. HostName and OwnerKey are required.
type Options struct {
	// HostName is the hub's name in connection strings and SAS resources
	// (host:port).
	HostName string
	// OwnerKey signs the owner policy's tokens.
	OwnerKey []byte
	// Durability of the store; a single hub defaults to Power: an event the
	// hub acknowledged to an edge is gone from the edge. A clustered one
	// runs its store at Process: what makes a command durable there is
	// raft's log, fsynced on a majority before any answer, which a node
	// replays over its store's last applied index after a crash (a store
	// that lost writes to a power cut keeps a prefix of them, and the
	// commands applied again bear it: see replicated.go).
	Durability kv.Durability
	Logger     *slog.Logger
	// PullWait caps how long an edge's pull is held (default 25 s).
	PullWait time.Duration
	// OnlineGrace is how long after its last pull an edge still counts as
	// connected for direct methods (default 5 s).
	OnlineGrace time.Duration
	// DuplicateWindow is how long after its last link request an edge
	// instance counts as live, for finding two live instances of one edge
	// identity (DefaultDuplicateWindow).
	DuplicateWindow time.Duration
	// Now is the wall clock (tests).
	Now func() time.Time
	// InMemory runs on an in-memory store (tests).
	InMemory bool
	// Retention is how long events stay in the log (and their digests in
	// the de-duplication index); default 7 days, as IoT Hub's longest.
	// Negative keeps them forever.
	Retention time.Duration
	// ImageDir holds the module image store (files, not in the store;
	// see images.go). Default: <dir>/images; with InMemory, a temporary
	// directory that Close removes.
	ImageDir string
	// MaxImageSize bounds one module image (default DefaultMaxImageSize,
	// 512 MiB); a larger push is refused with 413.
	MaxImageSize int64
	// DiskDir is where the disk monitor keeps its ballast (store/disk);
	// default: the parent of the store's directory. Not used InMemory.
	DiskDir string
	// Disk is a disk monitor the caller owns (tests); when nil the hub
	// opens its own unless InMemory.
	Disk *disk.Monitor
	// MaxLinkRequests is how many link requests one edge may have in flight
	// (DefaultMaxLinkRequests); more are answered 429 with Retry-After.
	MaxLinkRequests int
	// RequestDeadline bounds reading a request and writing its answer
	// (DefaultRequestDeadline); streams and long polls lift it once the
	// caller is authenticated (limits.go).
	RequestDeadline time.Duration
	// Clustered: commands go through the replicated log given to
	// SetCluster, never straight to the FSM (cluster.go).
	Clustered bool
	// Incarnation of the hub's twin replica (FSMOptions.Incarnation): made
	// once per hub, or per cluster and the same on its every node, so edges
	// tell a new hub from the one they synced with.
	Incarnation string
	// PeerTransport reaches the other nodes' APIs (a clustered hub's image
	// copies, imagerepl.go); default http.DefaultTransport.
	PeerTransport http.RoundTripper
}

// Hub is the cloud side's state and its service.
type Hub struct {
	opts       Options
	log        *slog.Logger
	busyLog    ratelog.Limiter // link frames over an edge's limit
	forwardLog ratelog.Limiter // failed forwards to the leader (cluster.go)
	linkSlots  linkSlots

	disk     *disk.Monitor // nil InMemory
	ownsDisk bool
	db       *kv.DB
	images   *imageStore
	// imageKick asks syncImages for a pass; imageFlights: one fetch per image.
	imageKick    chan struct{}
	imageFlights flights

	fsm     *FSM
	cluster atomic.Pointer[Cluster] // Clustered: the replicated log
	// recordEntry, if set (tests), sees every entry before it applies, in order.
	recordEntry func(entry []byte)
	mu          sync.Mutex // the state machine: commands apply one at a time
	wakeMu      sync.Mutex
	wakeCh      chan struct{} // closed and replaced after every change edges pull
	edges       *edges
	// registryMu: device writes one at a time, each checking the tree of
	// edges (tree.go) against the registry it changes.
	registryMu sync.Mutex
	// instances finds two live instances of one edge identity (instances.go).
	instances *instances
	closed    atomic.Bool
	done      chan struct{} // closed by Stop: ends the retention sweeper
	sweeper   sync.WaitGroup
	// deployKick asks the deployer for a pass (configurations.go) over
	// the edges in deployDirty, or all of them after deployAllNext.
	deployKick    chan struct{}
	deployMu      sync.Mutex
	deployDirty   map[string]bool
	deployAllNext bool
	metrics       *metrics // the FSM's
	runs          *jobRuns // the jobs this node runs (jobrun.go)
	// extraMetrics are appended to /metrics (AddMetrics: message routing).
	extraMu      sync.Mutex
	extraMetrics []func(w io.Writer)
}

type metrics struct {
	eventsAppended, eventsDuplicate, eventsRefused, eventsExpired, framesRefused, authFailed atomic.Int64
	instanceCollisions                                                                       atomic.Int64
	c2dSent, methodsInvoked, twinMerges                                                      atomic.Int64
	twinsRemoved, c2dPurged, twinGC, twinsStale, eventsStale                                 atomic.Int64
	eventsBadPath                                                                            atomic.Int64 // refused: the edge path is not the way up
	imagesPushed, imageBytes, imagesRefused, imagesFetched                                   atomic.Int64
	imageCopies, imagesUnreplicated                                                          atomic.Int64
	noSpace, linkBusy                                                                        atomic.Int64
	duplicateInstances                                                                       atomic.Int64
}

// Open opens (or creates) the hub's store in dir.
func Open(ctx context.Context, dir string, opts Options) (*Hub, error) {
	if opts.HostName == "" || len(opts.OwnerKey) == 0 {
		return nil, fmt.Errorf("open hub: HostName and OwnerKey are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Durability == 0 && !opts.Clustered {
		opts.Durability = kv.Power
	}
	if opts.PullWait <= 0 {
		opts.PullWait = 25 * time.Second
	}
	if opts.OnlineGrace <= 0 {
		opts.OnlineGrace = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.DuplicateWindow <= 0 {
		opts.DuplicateWindow = DefaultDuplicateWindow
	}
	if opts.Retention == 0 {
		opts.Retention = 7 * 24 * time.Hour
	}
	if opts.MaxImageSize <= 0 {
		opts.MaxImageSize = DefaultMaxImageSize
	}
	if opts.MaxLinkRequests <= 0 {
		opts.MaxLinkRequests = DefaultMaxLinkRequests
	}
	if opts.RequestDeadline <= 0 {
		opts.RequestDeadline = DefaultRequestDeadline
	}
	if opts.ImageDir == "" && !opts.InMemory {
		opts.ImageDir = filepath.Join(dir, "images")
	}
	h := &Hub{opts: opts, log: opts.Logger, wakeCh: make(chan struct{}), done: make(chan struct{}), metrics: &metrics{}, imageKick: make(chan struct{}, 1), deployKick: make(chan struct{}, 1), deployDirty: map[string]bool{}}
	h.linkSlots.max = opts.MaxLinkRequests
	h.runs = newJobRuns()
	h.edges = newEdges(h)
	h.instances = newInstances(h)
	kvo := kv.Options{Durability: opts.Durability, Logger: opts.Logger, InMemory: opts.InMemory}
	h.disk = opts.Disk
	if h.disk == nil && !opts.InMemory {
		if err := h.openDisk(dir, kvo); err != nil {
			return nil, fmt.Errorf("open hub: %w", err)
		}
		h.ownsDisk = true
	}
	if h.disk != nil {
		kvo.Space = h.disk
	}
	var err error
	if h.db, err = kv.Open(dir, kvo); err != nil {
		if h.ownsDisk {
			_ = h.disk.Close()
		}
		return nil, fmt.Errorf("open hub: %w", err)
	}
	if h.disk != nil {
		h.disk.Check() // Badger made a new write-ahead log and value-log file: back them now
	}
	inc := h.incarnation()
	fail := func(err error) (*Hub, error) {
		_ = h.Close()
		return nil, fmt.Errorf("open hub: %w", err)
	}
	if h.fsm, err = OpenFSM(ctx, h.db, FSMOptions{Logger: opts.Logger, Now: opts.Now, Incarnation: inc}); err != nil {
		return fail(err)
	}
	h.metrics = h.fsm.metrics
	h.fsm.onRestore = h.restored
	if h.images, err = openImages(opts.ImageDir, opts.MaxImageSize); err != nil {
		return fail(err)
	}
	h.fsm.onImage = h.imageChanged
	h.fsm.onApplied = h.kickDeployFor
	if err := h.adoptImages(); err != nil {
		return fail(err)
	}
	if opts.Clustered {
		h.sweeper.Add(1)
		go h.syncImages()
		h.kickImageSync()
	}
	if opts.Retention > 0 {
		h.sweeper.Add(1)
		go h.sweep()
	}
	h.sweeper.Add(1)
	go h.deployer()
	h.sweeper.Add(1)
	go h.runJobs()
	return h, nil
}

// The servers read the FSM's stores as a snapshot restore (on the
// applying goroutine) last left them: one load per use, no lock.

func (h *Hub) ids() *identity.Cache { return h.fsm.readers.Load().ids }
func (h *Hub) twins() *twin.Store   { return h.fsm.readers.Load().twins }
func (h *Hub) queues() *queue.Store { return h.fsm.readers.Load().queues }
func (h *Hub) events() *eventLog    { return h.fsm.readers.Load().events }

// incarnation is Options.Incarnation; without one, DefaultIncarnation for
// a clustered hub (the same on every node) and a new one for a single hub,
// which is then a new replica to the edges each time it opens: a caller
// that reopens a hub's store gives the incarnation it keeps (outpost hub
// keeps it in <data>/incarnation).
func (h *Hub) incarnation() string {
	switch {
	case h.opts.Incarnation != "":
		return h.opts.Incarnation
	case h.opts.Clustered:
		return DefaultIncarnation
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// FSM is the hub's state machine, for the replicated log to apply.
func (h *Hub) FSM() *FSM { return h.fsm }

// restored wakes the pulls after the replicated log restored a snapshot
// into the FSM.
func (h *Hub) restored() {
	h.wake()
	h.kickDeploy(true) // a whole new state: every edge's deployment again
	if h.opts.Clustered {
		h.kickImageSync()
	}
}

// Stop makes pulls and long polls in progress return at once, so an HTTP
// server can shut down before Close.
func (h *Hub) Stop() {
	if h.closed.Swap(true) {
		return
	}
	h.wake()
	close(h.done)
	if h.fsm != nil {
		h.events().close()
	}
}

// Close stops the hub and closes the store.
func (h *Hub) Close() error {
	if h.db == nil {
		return nil
	}
	h.Stop()
	h.sweeper.Wait()
	var errs []error
	if h.fsm != nil {
		errs = append(errs, h.fsm.Close())
	}
	errs = append(errs, h.db.Close())
	h.db = nil
	if h.ownsDisk {
		errs = append(errs, h.disk.Close())
	}
	if h.images != nil {
		errs = append(errs, h.images.close())
	}
	return errors.Join(errs...)
}

// openDisk starts the disk monitor before the store, releasing the
// ballast first on a full disk; events and image pushes are refused (507)
// below the reserve, management writes below the allowance.
func (h *Hub) openDisk(dir string, kvo kv.Options) error {
	ddir := h.opts.DiskDir
	if ddir == "" {
		ddir = filepath.Dir(filepath.Clean(dir))
	}
	if err := os.MkdirAll(ddir, 0o700); err != nil {
		return err
	}
	allowance := kv.Allowance(kvo)
	m, err := disk.Open(disk.Options{Dir: ddir, Store: dir, Allowance: allowance, Budget: 4 << 20, Ballast: allowance, FillHoles: true, Logger: h.log})
	if err != nil {
		return err
	}
	h.disk = m
	return nil
}

// admit charges n bytes of events or image to the disk: ErrNoSpace below
// the reserve.
func (h *Hub) admit(n int64) error {
	if h.disk == nil {
		return nil
	}
	if err := h.disk.Telemetry(n); err != nil {
		h.metrics.noSpace.Add(1)
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return nil
}

// DiskStatus is the last measurement of the hub's disk (zero InMemory).
func (h *Hub) DiskStatus() disk.Status {
	if h.disk == nil {
		return disk.Status{State: "ok"}
	}
	return h.disk.Status()
}

// wake tells waiting pulls that something changed.
func (h *Hub) wake() {
	h.wakeMu.Lock()
	close(h.wakeCh)
	h.wakeCh = make(chan struct{})
	h.wakeMu.Unlock()
}

// woken returns the channel the next wake closes.
func (h *Hub) woken() <-chan struct{} {
	h.wakeMu.Lock()
	defer h.wakeMu.Unlock()
	return h.wakeCh
}
