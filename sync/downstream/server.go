package downstream

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/queue"
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
	// for (twin.Members); default ChildMembers. The link adds "hub".
	Members func(id string) []string
	// Image returns the path of module image digest in this edge's cache,
	// fetching it from upstream first when missing; nil: images are not
	// served (501).
	Image func(ctx context.Context, digest string) (string, error)
}

// Stats counts what the children sent.
type Stats struct {
	Batches    int64 `json:"batches"`
	Messages   int64 `json:"messages"`   // queued here for upstream
	Duplicates int64 `json:"duplicates"` // at or below the child's cursor: already queued
	Refused    int64 `json:"refused"`    // acknowledged, not queued: source outside the child's subtree, or a bad path
	Busy       int64 `json:"busy"`       // requests refused (429): a child had MaxPerChild in flight
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
	locks   map[cursorKey]*sync.Mutex
	changed chan struct{} // closed when the identities change, then replaced
	wake    chan struct{} // closed when a C2D message or a method call waits for a child, then replaced
	// calls waiting for a child to take them (by child), and those handed
	// out waiting for their answer (by call id)
	calls   map[string][]*call
	waiting map[string]*call

	batches, messages, duplicates, refused atomic.Int64
	children                               map[string]*Child // under mu
	inFlight                               map[string]int    // requests per child, under mu
	busy                                   atomic.Int64      // requests refused: a child past MaxPerChild
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
		locks: map[cursorKey]*sync.Mutex{}, changed: make(chan struct{}), wake: make(chan struct{}), children: map[string]*Child{}, inFlight: map[string]int{},
		calls: map[string][]*call{}, waiting: map[string]*call{}}
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
	st := Stats{Batches: s.batches.Load(), Messages: s.messages.Load(), Duplicates: s.duplicates.Load(), Refused: s.refused.Load(), Busy: s.busy.Load()}
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

// cursorPrefix starts the keys of the children's cursors:
// l D <instance> 0 <queue> → the highest sequence number taken.
var cursorPrefix = []byte{kv.PrefixLink, 'D'}

func cursorDBKey(k cursorKey) []byte {
	return kv.AppendString(kv.AppendString(slices.Clone(cursorPrefix), k.instance), k.queue)
}

func (s *Server) loadCursors() error {
	return s.opts.DB.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: cursorPrefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			parts := strings.Split(string(item.Key()[len(cursorPrefix):]), "\x00")
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if len(parts) != 3 || parts[2] != "" || len(v) != 8 {
				return fmt.Errorf("downstream cursor %x: malformed record", item.Key())
			}
			s.cursors[cursorKey{parts[0], parts[1]}] = binary.BigEndian.Uint64(v)
		}
		return nil
	})
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
				s.opts.Logger.Warn("downstream frame refused", "child", child, "path", r.URL.Path, "err", err)
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
		s.opts.Logger.Warn("downstream link refused", "status", status, "err", err)
		protocol.WriteError(w, status, http.StatusText(status), err.Error())
		return "", nil, false
	}
	if !s.enter(w, child) {
		<-s.slots
		return "", nil, false
	}
	return child, func() { s.leave(child); <-s.slots }, true
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

// upstreamQueue reports whether name is one of the $upstream queues.
func upstreamQueue(name string) bool {
	p, ok := strings.CutPrefix(name, "$upstream/p")
	return ok && (p == "default" || len(p) == 1 && p[0] >= '0' && p[0] <= '9')
}

// sourceID turns a message source (devices/d[/modules/m]) into an identity id.
func sourceID(src string) (string, bool) {
	rest, ok := strings.CutPrefix(src, "devices/")
	if !ok || rest == "" {
		return "", false
	}
	d, m, hasModule := strings.Cut(rest, "/modules/")
	if d == "" || strings.Contains(d, "/") || hasModule && (m == "" || strings.Contains(m, "/")) {
		return "", false
	}
	if hasModule {
		return d + "/" + m, true
	}
	return d, true
}

// acceptable reports why a child's message may not be queued ("" if it may).
func (s *Server) unacceptable(child string, m protocol.Message) string {
	id, ok := sourceID(m.Source)
	if !ok || !s.inSubtree(child, id) {
		return fmt.Sprintf("source %q is not in the subtree of edge %q", m.Source, child)
	}
	if len(m.EdgePath) >= MaxDepth {
		return fmt.Sprintf("crossed %d edges; at most %d", len(m.EdgePath)+1, MaxDepth)
	}
	for _, e := range m.EdgePath {
		if e == child || !s.inSubtree(child, e) {
			return fmt.Sprintf("edge path %v: %q is not an edge below %q", m.EdgePath, e, child)
		}
	}
	return ""
}

func (s *Server) lock(k cursorKey) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.locks[k]
	if l == nil {
		l = &sync.Mutex{}
		s.locks[k] = l
	}
	return l
}

// messagesFrame queues a child's batch, with its cursor in the same commit.
func (s *Server) messagesFrame(ctx context.Context, child string, m protocol.Messages) (protocol.MessagesAck, error) {
	if err := checkInstance(child, m.Instance); err != nil {
		return protocol.MessagesAck{}, err
	}
	if !upstreamQueue(m.Queue) {
		return protocol.MessagesAck{}, invalid("queue %q is not an $upstream queue", m.Queue)
	}
	if len(m.Msgs) == 0 {
		return protocol.MessagesAck{}, nil
	}
	k := cursorKey{m.Instance, m.Queue}
	l := s.lock(k)
	l.Lock()
	defer l.Unlock()
	s.mu.Lock()
	cur := s.cursors[k]
	s.mu.Unlock()
	var ack protocol.MessagesAck
	var take []queue.Message
	prev := uint64(0)
	for _, msg := range m.Msgs {
		if msg.Seq <= prev {
			return protocol.MessagesAck{}, invalid("sequence numbers not increasing (%d after %d)", msg.Seq, prev)
		}
		prev = msg.Seq
		if msg.Seq <= cur {
			ack.Duplicates++
			continue
		}
		if why := s.unacceptable(child, msg); why != "" {
			ack.Refused++
			s.opts.Logger.Warn("message from a child edge refused", "child", child, "seq", msg.Seq, "reason", why)
			continue
		}
		path := append(slices.Clone(msg.EdgePath), child)
		take = append(take, queue.Message{ID: msg.ID, Source: msg.Source, Props: msg.Props, Sys: msg.Sys, Body: msg.Body, EdgePath: path})
	}
	ack.UpTo = prev
	if prev > cur {
		cursor := kv.Set(cursorDBKey(k), kv.AppendUint64(nil, prev))
		if err := s.store(ctx, m.Queue, take, cursor); err != nil {
			return protocol.MessagesAck{}, err
		}
		s.mu.Lock()
		s.cursors[k] = prev
		s.mu.Unlock()
	}
	ack.Appended = len(take)
	s.seen(child, m.Instance, func(c *Child) { c.Messages += int64(len(take)) })
	s.batches.Add(1)
	s.messages.Add(int64(len(take)))
	s.duplicates.Add(int64(ack.Duplicates))
	s.refused.Add(int64(ack.Refused))
	return ack, nil
}

// store appends msgs to the named queue with the cursor, or writes the
// cursor alone when nothing is taken; durable when it returns nil.
func (s *Server) store(ctx context.Context, name string, msgs []queue.Message, cursor kv.Op) error {
	if len(msgs) == 0 {
		return s.opts.DB.Commit(ctx, cursor)
	}
	q, ok := s.opts.Queues.Lookup(name)
	if !ok {
		var err error
		if q, err = s.opts.Queues.Queue(name, queue.QueueOptions{}); err != nil {
			return err
		}
	}
	ch := make(chan error, 1)
	q.AppendAsyncWith(msgs, []kv.Op{cursor}, func(_ []uint64, err error) { ch <- err })
	var err error
	select {
	case err = <-ch:
	case <-ctx.Done():
		return ctx.Err() // it may still commit: the cursor then says so
	}
	switch {
	case errors.Is(err, queue.ErrFull), errors.Is(err, queue.ErrNoSpace):
		return &statusError{http.StatusInsufficientStorage, "QueueFull",
			fmt.Errorf("edge %q cannot hold more (%v); the child keeps its backlog and sends it again later", s.opts.Edge, err)}
	case errors.Is(err, queue.ErrTooLarge):
		return &statusError{http.StatusRequestEntityTooLarge, "TooLarge", err}
	}
	return err
}

// pull answers the identities of the child's subtree when the child lacks
// them, else holds the request until they change or the wait passes.
func (s *Server) pull(ctx context.Context, child string, p protocol.Pull) (protocol.Push, error) {
	if err := checkInstance(child, p.Instance); err != nil {
		return protocol.Push{}, err
	}
	below := slices.DeleteFunc(slices.Clone(p.Children), func(c protocol.ChildStatus) bool {
		return c.Edge == child || !s.inSubtree(child, c.Edge) // a child reports its own subtree only
	})
	s.seen(child, p.Instance, func(c *Child) { c.Backlog, c.Below = p.Backlog, below })
	wait := min(time.Duration(p.WaitMs)*time.Millisecond, s.opts.PullWait)
	t := time.NewTimer(wait)
	defer t.Stop()
	if err := s.ackChild(ctx, child, p); err != nil {
		return protocol.Push{}, err
	}
	for {
		s.mu.Lock()
		changed, wake := s.changed, s.wake
		s.mu.Unlock()
		var twinsChanged <-chan struct{}
		if s.opts.Twins != nil {
			twinsChanged = s.opts.Twins.Changed()
		}
		push, err := s.collect(child, p)
		if err != nil || push.HasScope || len(push.Twins.Twins) > 0 || len(push.Twins.Commits) > 0 || len(push.C2D) > 0 || len(push.Methods) > 0 {
			return push, err
		}
		select {
		case <-changed:
		case <-twinsChanged:
		case <-wake:
		case <-t.C:
			return push, nil
		case <-ctx.Done():
			return protocol.Push{}, ctx.Err()
		}
	}
}

// twinFieldsPerPush bounds the twin fields of one answer (as the hub's).
const twinFieldsPerPush = 4096

// collect is what a child lacks: its subtree's identities when its digest
// differs, and the fields of its subtree's twins its version vector lacks.
func (s *Server) collect(child string, p protocol.Pull) (protocol.Push, error) {
	push := protocol.Push{Hub: s.opts.Replica}
	wire, err := s.subtree(child)
	if err != nil {
		return push, err
	}
	if d := digest(wire); d != p.Scope {
		push.HasScope, push.Scope, push.Identities = true, d, wire
	}
	if push.C2D, err = s.c2d(child, p.C2D, p.Hub == s.opts.Replica); err != nil {
		return push, err
	}
	push.Methods = s.takeCalls(child)
	if s.opts.Twins == nil {
		return push, nil
	}
	push.TwinVV = s.opts.Twins.VV() // before the delta: once applied, the child holds all of it
	if push.Twins, push.TwinsMore, err = s.opts.Twins.DeltaFor(p.TwinVV, twinFieldsPerPush, func(id string) bool { return s.inSubtree(child, id) }); err != nil {
		return push, err
	}
	for _, td := range push.Twins.Twins {
		if id, ok, _ := s.opts.Identities.Get(td.ID); ok {
			if push.Generations == nil {
				push.Generations = protocol.Generations{}
			}
			push.Generations[td.ID] = id.Generation
		}
	}
	return push, nil
}

// c2dBatch bounds the cloud-to-device messages per device in one answer.
const c2dBatch = 100

// C2DQueue is where the edge keeps the cloud-to-device messages of a device
// (as its broker does): for a device below a child edge they wait here
// until the child has stored them.
func C2DQueue(device string) string { return "c2d/" + device + "/p0" }

// C2DAppended wakes the children's pulls: a cloud-to-device message was
// queued here (the edge's link took it from the hub).
func (s *Server) C2DAppended() {
	s.mu.Lock()
	s.wakeLocked()
	s.mu.Unlock()
}

func (s *Server) wakeLocked() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// c2d returns the cloud-to-device messages waiting here for the leaf
// devices of a child's subtree, past the child's cursors; what the child
// says it stored (cursors, counted in this edge's queue sequence numbers
// when mine is set) is removed first.
func (s *Server) c2d(child string, cursors map[string]uint64, mine bool) ([]protocol.C2D, error) {
	ids, err := s.opts.Identities.List()
	if err != nil {
		return nil, err
	}
	var out []protocol.C2D
	for _, id := range ids {
		if id.ModuleID != "" || id.Edge || !s.inSubtree(child, id.DeviceID) {
			continue
		}
		q, ok := s.opts.Queues.Lookup(C2DQueue(id.DeviceID))
		if !ok {
			continue
		}
		cur := uint64(0)
		if mine {
			cur = cursors[id.DeviceID]
		}
		msgs, err := s.c2dFor(q, cur)
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			out = append(out, protocol.C2D{Device: id.DeviceID, Seq: m.Seq, ID: m.ID, Props: m.Props, Sys: m.Sys, Body: m.Body,
				EnqueuedAt: m.EnqueuedAt.UnixMilli()})
		}
	}
	return out, nil
}

// c2dFor removes what a child stored (up to cur) from q and returns what
// follows. It leases from the oldest message every time: a push lost on
// the way is sent again, and the child's cursor skips what it has.
func (s *Server) c2dFor(q *queue.Queue, cur uint64) ([]queue.Message, error) {
	l := s.lock(cursorKey{queue: q.Name()})
	l.Lock()
	defer l.Unlock()
	q.Rewind()
	for {
		msgs, err := q.Lease(c2dBatch, protocol.MaxC2D*4)
		if err != nil {
			return nil, err
		}
		done := uint64(0)
		for len(msgs) > 0 && msgs[0].Seq <= cur {
			done = msgs[0].Seq
			msgs = msgs[1:]
		}
		if done > 0 {
			if err := q.Ack(context.Background(), done); err != nil {
				return nil, err
			}
		}
		if len(msgs) > 0 || done == 0 {
			return msgs, nil
		}
	}
}

// memberPrefix names a child edge as a member of its subtree's twins.
const memberPrefix = "child:"

// ChildMembers are the children whose subtree holds twin id, as twin
// members ("child:<edge>"): a tombstone there waits for their acks.
func (s *Server) ChildMembers(id string) []string {
	dev, _, _ := strings.Cut(id, "/")
	for range MaxDepth + 1 {
		d, ok, _ := s.opts.Identities.Get(dev)
		if !ok {
			return nil
		}
		parent := s.parentOf(d)
		if parent == s.opts.Edge {
			if d.Edge && dev != s.opts.Edge {
				return []string{memberPrefix + dev}
			}
			return nil // a device or module of this edge itself
		}
		if parent == "" {
			return nil
		}
		dev = parent
	}
	return nil
}

// ackChild records a child's version vector as its ack (the twin
// tombstones it holds) and collects what became stable.
func (s *Server) ackChild(ctx context.Context, child string, p protocol.Pull) error {
	if s.opts.Twins == nil || p.TwinVV == nil {
		return nil
	}
	if err := s.opts.Twins.Ack(ctx, memberPrefix+child, crdt.ReplicaID(p.Instance), p.TwinVV); err != nil {
		return err
	}
	members := s.opts.Members
	if members == nil {
		members = s.ChildMembers
	}
	if _, err := s.opts.Twins.GC(ctx, members, 32); err != nil {
		return fmt.Errorf("twin gc: %w", err)
	}
	return nil
}

// writerOf returns the edge whose incarnation a replica id names, if it
// is an edge known here.
func (s *Server) writerOf(o crdt.ReplicaID) (string, bool) {
	base, _, ok := twin.SplitReplica(o)
	name, isEdge := strings.CutPrefix(base, "edge:")
	if !ok || !isEdge || !twin.IsEdgeReplica(o, name) {
		return "", false
	}
	id, known, _ := s.opts.Identities.Get(name)
	return name, known && id.Edge
}

// Forwards reports whether o is an incarnation of an edge below this one:
// its writes reach the hub through this edge (the link sends them up).
func (s *Server) Forwards(o crdt.ReplicaID) bool {
	name, ok := s.writerOf(o)
	return ok && name != s.opts.Edge && s.inSubtree(s.opts.Edge, name)
}

// twinsFrame merges a child's twin changes: fields written by incarnations
// of edges in its subtree, each for a twin in that edge's own subtree, with
// their stamps as they are; answers this edge's version vector.
func (s *Server) twinsFrame(ctx context.Context, child string, m protocol.TwinsUp) (protocol.TwinsAck, error) {
	if err := checkInstance(child, m.Instance); err != nil {
		return protocol.TwinsAck{}, err
	}
	writerOK := func(o crdt.ReplicaID) (string, bool) {
		w, ok := s.writerOf(o)
		return w, ok && s.inSubtree(child, w)
	}
	batch := twin.Batch{Commits: m.Batch.Commits}
	for _, c := range m.Batch.Commits {
		if _, ok := writerOK(c.Origin); !ok {
			return protocol.TwinsAck{}, invalid("commit for %s; a child edge sends only writes of edges in its subtree", c.Origin)
		}
	}
	for _, td := range m.Batch.Twins {
		for _, f := range td.Fields {
			w, ok := writerOK(f.Key().Origin)
			if !ok || !s.inSubtree(w, td.ID) {
				return protocol.TwinsAck{}, invalid("twin %q carries a field written by %s, which is not an edge above it in the subtree of %q", td.ID, f.Key().Origin, child)
			}
		}
		cur, ok, _ := s.opts.Identities.Get(td.ID)
		if !ok || m.Generations[td.ID] != "" && m.Generations[td.ID] != cur.Generation {
			s.opts.Logger.Warn("twin delta of a child edge refused: written for a deleted generation of the identity", "child", child, "twin", td.ID)
			continue
		}
		td.CloudDesired = 0 // the hub's desired version comes from the hub, never from below
		batch.Twins = append(batch.Twins, td)
	}
	changes, err := s.opts.Twins.ApplyDelta(ctx, batch)
	if errors.Is(err, twin.ErrBadDelta) {
		return protocol.TwinsAck{}, invalid("%v", err)
	} else if err != nil {
		return protocol.TwinsAck{}, err
	}
	if s.opts.TwinChanges != nil && len(changes) > 0 {
		s.opts.TwinChanges(changes)
	}
	s.seen(child, m.Instance, nil)
	return protocol.TwinsAck{TwinVV: s.opts.Twins.VV(), Hub: s.opts.Replica}, nil
}

// subtree lists the identities of a child edge's subtree in wire form.
func (s *Server) subtree(child string) ([]protocol.Identity, error) {
	all, err := s.opts.Identities.List()
	if err != nil {
		return nil, err
	}
	all = slices.DeleteFunc(all, func(id identity.Identity) bool { return !s.inSubtree(child, id.ID()) })
	return protocol.IdentitiesFromStore(all), nil
}

// digest names a set of identities as the child receives them.
func digest(ids []protocol.Identity) string {
	data, _ := kv.Marshal(ids)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:16])
}

// call is a direct method for a device or module below a child edge.
type call struct {
	child  string
	mc     protocol.MethodCall
	handed bool
	res    chan protocol.MethodResult
}

// Invoke hands a direct method for target, below child, to the child's
// next pull and waits for its answer: 404 when the child did not take it
// in time (it is not connected), 504 when it took it and did not answer.
func (s *Server) Invoke(ctx context.Context, child, target, name string, payload []byte, timeout time.Duration) protocol.MethodResult {
	c := &call{child: child, mc: protocol.MethodCall{ID: queue.NewID(), Target: target, Name: name, Payload: payload, TimeoutMs: timeout.Milliseconds()},
		res: make(chan protocol.MethodResult, 1)}
	s.mu.Lock()
	s.calls[child] = append(s.calls[child], c)
	s.waiting[c.mc.ID] = c
	s.wakeLocked()
	s.mu.Unlock()
	t := time.NewTimer(timeout + min(timeout, 5*time.Second)) // the child answers 504 itself after timeout
	defer t.Stop()
	select {
	case r := <-c.res:
		return r
	case <-t.C:
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.waiting, c.mc.ID)
	s.calls[child] = slices.DeleteFunc(s.calls[child], func(x *call) bool { return x == c })
	if !c.handed {
		return protocol.MethodResult{Status: 404, Error: fmt.Sprintf("child edge %q, which %s is below, is not connected to edge %q", child, target, s.opts.Edge)}
	}
	return protocol.MethodResult{Status: 504, Error: fmt.Sprintf("child edge %q did not answer the call for %s in time", child, target)}
}

// takeCalls hands the calls waiting for a child to its pull.
func (s *Server) takeCalls(child string) []protocol.MethodCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []protocol.MethodCall
	for _, c := range s.calls[child] {
		c.handed = true
		out = append(out, c.mc)
	}
	delete(s.calls, child)
	return out
}

// methodResult takes a child's answer to a call it was handed.
func (s *Server) methodResult(_ context.Context, child string, r protocol.MethodResult) (struct{}, error) {
	s.mu.Lock()
	c := s.waiting[r.ID]
	if c != nil && c.child == child {
		delete(s.waiting, r.ID)
	} else {
		c = nil // another child's call is not this one's to answer
	}
	s.mu.Unlock()
	if c == nil {
		return struct{}{}, &statusError{http.StatusNotFound, "NotFound", fmt.Errorf("no method call %q waits for an answer (it may have timed out)", r.ID)}
	}
	c.res <- r
	return struct{}{}, nil
}

// ChildOf returns the child edge whose subtree holds id ("d" or "d/m"),
// "" when id is this edge's own (or unknown).
func (s *Server) ChildOf(id string) string {
	m := s.ChildMembers(id)
	if len(m) == 0 {
		return ""
	}
	return strings.TrimPrefix(m[0], memberPrefix)
}

// image serves a module image to a child edge from this edge's cache,
// fetched from upstream (and kept) first when missing: a child deploys with
// only its parent reachable. Range requests are answered.
func (s *Server) image(w http.ResponseWriter, r *http.Request) {
	child, release, ok := s.admit(w, r)
	if !ok {
		return
	}
	defer release()
	digest := r.PathValue("digest")
	if _, err := protocol.DigestHex(digest); err != nil {
		protocol.WriteError(w, http.StatusBadRequest, "InvalidDigest", err.Error())
		return
	}
	path, err := s.opts.Image(r.Context(), digest)
	if err != nil {
		s.opts.Logger.Warn("image for a child edge not available", "child", child, "digest", digest, "err", err)
		protocol.WriteError(w, http.StatusNotFound, "ImageNotFound", fmt.Sprintf("image %s: %v", digest, err))
		return
	}
	f, err := os.Open(path)
	if err != nil {
		protocol.WriteError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		protocol.WriteError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	// An image over the child's link takes what it takes, but a child that
	// reads nothing for imageStall is cut off.
	http.ServeContent(stallWriter{w, http.NewResponseController(w)}, r, "", st.ModTime(), f)
	s.opts.Logger.Debug("image served to a child edge", "child", child, "digest", digest, "range", r.Header.Get("Range"))
}

// imageStall is how long a child may read nothing of an image before the
// transfer is cut (as a child gives up on a parent that sends nothing).
var imageStall = 60 * time.Second

// stallWriter moves the write deadline on before every write: a transfer
// may be long, but not stalled.
type stallWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
}

func (w stallWriter) Write(b []byte) (int, error) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(imageStall))
	return w.ResponseWriter.Write(b)
}
