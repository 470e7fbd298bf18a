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
}

// Stats counts what the children sent.
type Stats struct {
	Batches    int64 `json:"batches"`
	Messages   int64 `json:"messages"`   // queued here for upstream
	Duplicates int64 `json:"duplicates"` // at or below the child's cursor: already queued
	Refused    int64 `json:"refused"`    // acknowledged, not queued: source outside the child's subtree, or a bad path
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
}

// Server serves the link to child edges.
type Server struct {
	opts  Options
	slots chan struct{}

	mu      sync.Mutex
	cursors map[cursorKey]uint64
	locks   map[cursorKey]*sync.Mutex
	changed chan struct{} // closed when the identities change, then replaced

	batches, messages, duplicates, refused atomic.Int64
	children                               map[string]*Child // under mu
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
	s := &Server{opts: opts, slots: make(chan struct{}, opts.MaxRequests), cursors: map[cursorKey]uint64{},
		locks: map[cursorKey]*sync.Mutex{}, changed: make(chan struct{}), children: map[string]*Child{}}
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
	st := Stats{Batches: s.batches.Load(), Messages: s.messages.Load(), Duplicates: s.duplicates.Load(), Refused: s.refused.Load()}
	s.mu.Lock()
	for _, c := range s.children {
		st.Children = append(st.Children, *c)
	}
	s.mu.Unlock()
	slices.SortFunc(st.Children, func(a, b Child) int { return strings.Compare(a.ID, b.ID) })
	return st
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
	for _, p := range []string{"POST " + protocol.PathTwins, "POST " + protocol.PathMethods, "GET " + protocol.PathImages + "/{digest}"} {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			if _, status, err := s.child(r); err != nil {
				protocol.WriteError(w, status, http.StatusText(status), err.Error())
				return
			}
			protocol.WriteError(w, http.StatusNotImplemented, "NotServedByParent",
				fmt.Sprintf("%s through a parent edge is not served yet (edge %q serves messages and identities to its children)", r.URL.Path, s.opts.Edge))
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
		select {
		case s.slots <- struct{}{}:
			defer func() { <-s.slots }()
		default:
			w.Header().Set("Retry-After", "1")
			protocol.WriteError(w, http.StatusServiceUnavailable, "Busy", fmt.Sprintf("edge %q serves %d link requests at once; try again", s.opts.Edge, cap(s.slots)))
			return
		}
		// A child that stops sending or reading is cut off: the frame in
		// 2 minutes, the answer in the pull's wait and 2 minutes more.
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Now().Add(2 * time.Minute))
		_ = rc.SetWriteDeadline(time.Now().Add(s.opts.PullWait + 2*time.Minute))
		child, status, err := s.child(r)
		if err != nil {
			s.opts.Logger.Warn("downstream link refused", "status", status, "err", err)
			protocol.WriteError(w, status, http.StatusText(status), err.Error())
			return
		}
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
	return protocol.Welcome{Version: protocol.Version, Cursors: cur, HubTime: s.opts.Now().UnixMilli(), Hub: s.opts.Replica}, nil
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
	s.seen(child, p.Instance, func(c *Child) { c.Backlog = p.Backlog })
	wait := min(time.Duration(p.WaitMs)*time.Millisecond, s.opts.PullWait)
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		s.mu.Lock()
		changed := s.changed
		s.mu.Unlock()
		wire, err := s.subtree(child)
		if err != nil {
			return protocol.Push{}, err
		}
		if d := digest(wire); d != p.Scope {
			return protocol.Push{HasScope: true, Scope: d, Identities: wire, Hub: s.opts.Replica}, nil
		}
		select {
		case <-changed:
		case <-t.C:
			return protocol.Push{Hub: s.opts.Replica}, nil
		case <-ctx.Done():
			return protocol.Push{}, ctx.Err()
		}
	}
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
