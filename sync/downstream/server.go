package downstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/store/ratelog"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// MaxDepth is how many edges a message may cross below the hub (Azure IoT
// Edge's limit of nested layers).
const MaxDepth = 5

// Options configure a Server.
type Options struct {
	Edge       string // this edge's device id
	HostName   string // the IoT hub host name the children's tokens are signed for
	DB         *kv.DB
	Queues     *queue.Store
	Identities *identity.Cache
	// Replica names this edge's store to its children (Welcome.Hub,
	// Push.Hub): its twin replica id.
	Replica  string
	Logger   *slog.Logger
	Now      func() time.Time // default time.Now
	PullWait time.Duration    // the longest a pull is held; default 20 s
	// MaxRequests bounds the requests served at once (all children);
	// past it a request is answered 503 at once. Default 64.
	MaxRequests int
	// MaxPerChild bounds one child's requests in flight, as the hub
	// bounds an edge's (429 with Retry-After past it). Default 8.
	MaxPerChild int
	// Twins is this edge's twin store: it holds the replicas of its
	// subtree's twins, merges its children's deltas (their own stamps
	// and replica ids) and serves them what they lack. nil: twins are
	// not served (501).
	Twins *twin.Store
	// TwinChanges, if set, is told what a child's delta changed here.
	TwinChanges func([]twin.Change)
	// Members lists the members of a twin whose acks its tombstones wait
	// for (twin.Members); default ChildMembers (the edge's wiring adds the
	// hub when it has one).
	Members func(id string) []string
	// Image returns the path of module image digest in this edge's cache,
	// fetching it from upstream first when missing; nil: images are not
	// served (501).
	Image func(ctx context.Context, digest string) (string, error)
	// OnPresence, if set, is told (without blocking: it signals) that a
	// child reported a change of the clients connected below it.
	OnPresence func()
}

// Stats counts what the children sent.
type Stats struct {
	Batches    int64 `json:"batches"`
	Messages   int64 `json:"messages"`   // queued here for upstream
	Duplicates int64 `json:"duplicates"` // at or below the child's cursor: already queued
	Refused    int64 `json:"refused"`    // acknowledged, not queued: source outside the child's subtree, or a bad path
	Busy       int64 `json:"busy"`       // requests refused (429): a child had MaxPerChild in flight
	// Collisions counts messages queued although their incarnation had
	// sent others under the same numbers: a copy of a child's data
	// directory runs somewhere (docs/operations.md, "Cloned data directories").
	Collisions int64 `json:"collisions"`
	// Children are the child edges seen since this edge started, by id.
	Children []Child `json:"children,omitempty"`
}

// Child is what a parent knows of one child edge.
type Child struct {
	ID       string    `json:"id"`
	Instance string    `json:"instance"` // its incarnation last seen
	LastSeen time.Time `json:"lastSeen"`
	// Backlog is how many messages waited in the child's $upstream
	// queues at its last pull.
	Backlog  int64 `json:"backlog"`
	Messages int64 `json:"messages"` // queued here from it since this edge started
	// Below are the edges below it, as it reported them with its last pull.
	Below []protocol.ChildStatus `json:"below,omitempty"`
}

// Server serves the link to child edges.
type Server struct {
	opts  Options
	slots chan struct{}

	mu      sync.Mutex
	cursors map[cursorKey]uint64
	used    map[string]time.Time // when each incarnation last sent a frame (zero: not since the start)
	locks   map[cursorKey]*sync.Mutex
	changed chan struct{} // closed when the identities change, then replaced
	wake    chan struct{} // closed when a C2D message or a method call waits for a child, then replaced
	// calls waiting for a child to take them (by child), and those handed
	// out waiting for their answer (by call id)
	calls   map[string][]*call
	waiting map[string]*call
	// clients are the clients connected below each child, as it last
	// reported them (ChildClients).
	clients map[string]map[string]protocol.Presence

	// log limits the refusal lines: one per kind every 10 s, with how many
	// were held back.
	log ratelog.Limiter

	batches, messages, duplicates, refused, collisions atomic.Int64
	children                                           map[string]*Child // under mu
	inFlight                                           map[string]int    // requests per child, under mu
	busy                                               atomic.Int64      // requests refused: a child past MaxPerChild
	// scopes maps an edge's deviceScope to its device id, rebuilt when
	// the identities change.
	scopes atomic.Pointer[map[string]string]
}

type cursorKey struct{ instance, queue string }

// New loads the children's cursors and watches the identity cache.
func New(opts Options) (*Server, error) {
	if opts.Edge == "" || opts.HostName == "" || opts.DB == nil || opts.Queues == nil || opts.Identities == nil {
		return nil, errors.New("downstream: Edge, HostName, DB, Queues and Identities are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PullWait <= 0 {
		opts.PullWait = 20 * time.Second
	}
	if opts.MaxRequests <= 0 {
		opts.MaxRequests = 64
	}
	if opts.MaxPerChild <= 0 {
		opts.MaxPerChild = 8
	}
	s := &Server{opts: opts, slots: make(chan struct{}, opts.MaxRequests), cursors: map[cursorKey]uint64{},
		locks: map[cursorKey]*sync.Mutex{}, changed: make(chan struct{}), wake: make(chan struct{}), used: map[string]time.Time{}, children: map[string]*Child{}, inFlight: map[string]int{},
		calls: map[string][]*call{}, waiting: map[string]*call{}, clients: map[string]map[string]protocol.Presence{},
		log: ratelog.Limiter{Every: 10 * time.Second, Now: opts.Now}}
	if err := s.loadCursors(); err != nil {
		return nil, err
	}
	s.indexScopes()
	opts.Identities.Watch(func([]string) {
		s.indexScopes()
		s.mu.Lock()
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	})
	return s, nil
}

// Stats returns the counters and the children, sorted by id.
func (s *Server) Stats() Stats {
	st := Stats{Batches: s.batches.Load(), Messages: s.messages.Load(), Duplicates: s.duplicates.Load(), Refused: s.refused.Load(), Busy: s.busy.Load(), Collisions: s.collisions.Load()}
	s.mu.Lock()
	for _, c := range s.children {
		st.Children = append(st.Children, *c)
	}
	s.mu.Unlock()
	slices.SortFunc(st.Children, func(a, b Child) int { return strings.Compare(a.ID, b.ID) })
	return st
}

// Report lists the edges below this one for its own pull (the hub shows
// the tree): each child as this edge last heard from it, then what each
// reported of the edges below it.
func (s *Server) Report() []protocol.ChildStatus {
	var out []protocol.ChildStatus
	for _, c := range s.Stats().Children {
		out = append(out, protocol.ChildStatus{Edge: c.ID, Parent: s.opts.Edge, LastSeen: c.LastSeen.UnixMilli(), Backlog: c.Backlog})
		out = append(out, c.Below...)
	}
	return out
}

// seen records a request of a child's incarnation; f, if set, updates its
// record under the lock.
func (s *Server) seen(child, instance string, f func(*Child)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.children[child]
	if c == nil {
		c = &Child{ID: child}
		s.children[child] = c
	}
	c.Instance, c.LastSeen = instance, s.opts.Now()
	if f != nil {
		f(c)
	}
}

// indexScopes rebuilds the deviceScope → edge index.
func (s *Server) indexScopes() {
	ids, err := s.opts.Identities.List()
	if err != nil {
		s.opts.Logger.Error("downstream: list identities", "err", err)
		return
	}
	m := map[string]string{}
	for _, id := range ids {
		if id.Edge && id.ModuleID == "" && id.DeviceScope != "" {
			m[id.DeviceScope] = id.DeviceID
		}
	}
	s.scopes.Store(&m)
}

// parentOf returns the edge a device connects through, "" when none is known.
func (s *Server) parentOf(d identity.Identity) string {
	if len(d.ParentScopes) != 1 {
		return ""
	}
	return (*s.scopes.Load())[d.ParentScopes[0]]
}

// inSubtree reports whether id ("d" or "d/m") belongs to edge's subtree:
// edge itself, its modules, its devices, and recursively its child edges'.
func (s *Server) inSubtree(edge, id string) bool {
	if _, ok, _ := s.opts.Identities.Get(id); !ok {
		return false
	}
	dev, _, _ := strings.Cut(id, "/")
	for range MaxDepth + 1 {
		if dev == edge {
			return true
		}
		d, ok, _ := s.opts.Identities.Get(dev)
		if !ok {
			return false
		}
		if dev = s.parentOf(d); dev == "" {
			return false
		}
	}
	return false
}

// child authenticates a request: the SAS token of an enabled edge whose
// parent is this edge.
func (s *Server) child(r *http.Request) (string, int, error) {
	tok, err := sas.ParseToken(r.Header.Get("Authorization"))
	if err != nil {
		return "", http.StatusUnauthorized, err
	}
	_, name, ok := strings.Cut(tok.Resource, "/devices/")
	if !ok || strings.Contains(name, "/") {
		return "", http.StatusUnauthorized, errors.New("the link takes an edge device's token (resource <host>/devices/<edge>)")
	}
	id, ok, _ := s.opts.Identities.Get(name)
	if !ok || !id.Edge || id.Status != identity.Enabled || id.Auth.Type != identity.AuthSAS {
		return "", http.StatusForbidden, fmt.Errorf("%q is not an enabled edge device with SAS keys known to edge %q", name, s.opts.Edge)
	}
	if err := sas.Verify(tok, sas.ResourceURI(s.opts.HostName, name, ""), [][]byte{id.Auth.PrimaryKey, id.Auth.SecondaryKey}, s.opts.Now(), sas.DefaultSkew); err != nil {
		return "", http.StatusUnauthorized, err
	}
	if s.parentOf(id) != s.opts.Edge {
		return "", http.StatusForbidden, fmt.Errorf("edge %q is not a child of edge %q (outpost device create %s --edge --parent %s)", name, s.opts.Edge, name, s.opts.Edge)
	}
	return name, 0, nil
}

// Handler serves the link's paths.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+protocol.PathHello, serve(s, s.hello))
	mux.HandleFunc("POST "+protocol.PathMessages, serve(s, s.messagesFrame))
	mux.HandleFunc("POST "+protocol.PathPull, serve(s, s.pull))
	mux.HandleFunc("POST "+protocol.PathMethods, serve(s, s.methodResult))
	mux.HandleFunc("POST "+protocol.PathPresence, serve(s, s.presence))
	var notServed []string
	if s.opts.Image != nil {
		mux.HandleFunc("GET "+protocol.PathImages+"/{digest}", s.image)
	} else {
		notServed = append(notServed, "GET "+protocol.PathImages+"/{digest}")
	}
	if s.opts.Twins != nil {
		mux.HandleFunc("POST "+protocol.PathTwins, serve(s, s.twinsFrame))
	} else {
		notServed = append(notServed, "POST "+protocol.PathTwins)
	}
	for _, p := range notServed {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			if _, status, err := s.child(r); err != nil {
				protocol.WriteError(w, status, http.StatusText(status), err.Error())
				return
			}
			protocol.WriteError(w, http.StatusNotImplemented, "NotServedByParent",
				fmt.Sprintf("%s through a parent edge is not served yet (edge %q does not serve it to its children)", r.URL.Path, s.opts.Edge))
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		protocol.WriteError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("no link path %s %s on this edge's downstream listener", r.Method, r.URL.Path))
	})
	return mux
}

// statusError is an error with the HTTP status that answers it.
type statusError struct {
	status int
	code   string
	err    error
}

func (e *statusError) Error() string { return e.err.Error() }

func invalid(format string, args ...any) error {
	return &statusError{http.StatusBadRequest, "InvalidFrame", fmt.Errorf(format, args...)}
}

// serve decodes a frame of a child edge, calls f and encodes its answer.
func serve[In, Out any](s *Server, f func(ctx context.Context, child string, in In) (Out, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		child, release, ok := s.admit(w, r)
		if !ok {
			return
		}
		defer release()
		// A child that stops sending or reading is cut off: the frame in
		// 2 minutes, the answer in the pull's wait and 2 minutes more.
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Now().Add(2 * time.Minute))
		_ = rc.SetWriteDeadline(time.Now().Add(s.opts.PullWait + 2*time.Minute))
		var in In
		if err := protocol.Decode(http.MaxBytesReader(w, r.Body, protocol.MaxFrame), r.Header.Get("Content-Encoding"), &in); err != nil {
			protocol.WriteError(w, http.StatusBadRequest, "InvalidFrame", err.Error())
			return
		}
		out, err := f(r.Context(), child, in)
		if err != nil {
			var se *statusError
			if !errors.As(err, &se) {
				se = &statusError{http.StatusInternalServerError, "InternalError", err}
			}
			if se.status != http.StatusInternalServerError && se.status != http.StatusInsufficientStorage {
				s.warn("frame", "downstream frame refused", "child", child, "path", r.URL.Path, "err", err)
			}
			protocol.WriteError(w, se.status, se.code, err.Error())
			return
		}
		body, enc, err := protocol.Encode(out)
		if err != nil {
			protocol.WriteError(w, http.StatusInternalServerError, "InternalError", err.Error())
			return
		}
		w.Header().Set("Content-Type", protocol.ContentType)
		w.Header().Set("Date", s.opts.Now().UTC().Format(http.TimeFormat))
		if enc != "" {
			w.Header().Set("Content-Encoding", enc)
		}
		_, _ = w.Write(body)
	}
}

// admit takes a request of a child edge: a slot among MaxRequests (503
// past them), the child's SAS token (401/403), a turn among its own
// MaxPerChild (429); release gives them back. ok false: answered.
func (s *Server) admit(w http.ResponseWriter, r *http.Request) (child string, release func(), ok bool) {
	select {
	case s.slots <- struct{}{}:
	default:
		w.Header().Set("Retry-After", "1")
		protocol.WriteError(w, http.StatusServiceUnavailable, "Busy", fmt.Sprintf("edge %q serves %d link requests at once; try again", s.opts.Edge, cap(s.slots)))
		return "", nil, false
	}
	child, status, err := s.child(r)
	if err != nil {
		<-s.slots
		s.warn("auth", "downstream link refused", "status", status, "err", err)
		protocol.WriteError(w, status, http.StatusText(status), err.Error())
		return "", nil, false
	}
	if !s.enter(w, child) {
		<-s.slots
		return "", nil, false
	}
	return child, func() { s.leave(child); <-s.slots }, true
}

// warn logs a refusal of kind, at most once every 10 s per kind.
func (s *Server) warn(kind, msg string, args ...any) {
	if ok, held := s.log.Allow(kind); ok {
		s.opts.Logger.Warn(msg, append(args, "refused_since_last_logged", held)...)
	}
}

// enter counts a request of child in flight, or answers 429 when the child
// has MaxPerChild already: one child cannot take the slots of the others.
func (s *Server) enter(w http.ResponseWriter, child string) bool {
	s.mu.Lock()
	ok := s.inFlight[child] < s.opts.MaxPerChild
	if ok {
		s.inFlight[child]++
	}
	s.mu.Unlock()
	if !ok {
		s.busy.Add(1)
		w.Header().Set("Retry-After", "1")
		protocol.WriteError(w, http.StatusTooManyRequests, "TooManyRequests",
			fmt.Sprintf("edge %q has %d link requests in flight at edge %q, the limit; retry after 1 s", child, s.opts.MaxPerChild, s.opts.Edge))
	}
	return ok
}

func (s *Server) leave(child string) {
	s.mu.Lock()
	if s.inFlight[child]--; s.inFlight[child] <= 0 {
		delete(s.inFlight, child)
	}
	s.mu.Unlock()
}

func checkInstance(child, instance string) error {
	if len(instance) > 256 || !twin.IsEdgeReplica(crdt.ReplicaID(instance), child) {
		return invalid("instance %q is not an incarnation of edge %q", instance, child)
	}
	return nil
}

func (s *Server) hello(_ context.Context, child string, m protocol.Hello) (protocol.Welcome, error) {
	if m.Version != protocol.Version {
		return protocol.Welcome{}, invalid("protocol version %d; this edge speaks %d", m.Version, protocol.Version)
	}
	if err := checkInstance(child, m.Instance); err != nil {
		return protocol.Welcome{}, err
	}
	cur := map[string]uint64{}
	s.mu.Lock()
	for k, v := range s.cursors {
		if k.instance == m.Instance {
			cur[k.queue] = v
		}
	}
	s.mu.Unlock()
	w := protocol.Welcome{Version: protocol.Version, Cursors: cur, HubTime: s.opts.Now().UnixMilli(), Hub: s.opts.Replica}
	if s.opts.Twins != nil {
		w.TwinVV = s.opts.Twins.VV()
	}
	return w, nil
}
