package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
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

// Target is what the link hands downstream traffic to (the broker).
type Target interface {
	// TwinChanges tells connected clients about merged twin changes.
	TwinChanges(changes []twin.Change)
	// SendC2D queues a cloud-to-device message for a device, durably.
	SendC2D(ctx context.Context, device string, m queue.Message) error
	// InvokeMethod calls a direct method and waits for the answer; a
	// result with Status 404 or 504 and Error set means not connected or no
	// answer in time.
	InvokeMethod(ctx context.Context, target, name string, payload []byte, timeout time.Duration) protocol.MethodResult
	// Disconnect drops the connection of an identity the hub removed or
	// disabled.
	Disconnect(id, reason string)
	// PurgeQueues removes the messages that wait for an identity the hub
	// deleted (C2D, module inputs) and returns how many.
	PurgeQueues(ctx context.Context, id string) (int, error)
}

// Options configure a Link.
type Options struct {
	URL string // the hub's base URL, e.g. http://hub:8080 (when URLs is empty)
	// URLs are the base URLs of a hub cluster's nodes: the link moves to
	// the next when one fails (see nodes.go). One URL: a single hub.
	URLs       []string
	Edge       sas.ConnString // the edge device's connection string
	DB         *kv.DB
	Queues     *queue.Store
	Twins      *twin.Store
	Identities *identity.Cache
	Target     Target
	Client     *http.Client   // default: a client with sane timeouts
	RootCAs    *x509.CertPool // with the default client: the CAs a TLS hub's certificate chains to (nil: the system's)
	Logger     *slog.Logger

	BackoffMin, BackoffMax time.Duration // default 100 ms, 1 s
	// RefusedMin and RefusedMax bound the backoff after the hub refused
	// the edge's credentials (401, 403): default 30 s and 5 min. Only one
	// loop asks again; a success or a new Link (a restart with a new
	// connection string) starts afresh.
	RefusedMin, RefusedMax time.Duration
	// Refused, if set, is called when the link enters the unauthorized or
	// forbidden state (not again while it stays there), for a line people
	// see besides the log.
	Refused        func(state string, err *HubError)
	PullWait       time.Duration // default 20 s
	BatchMessages  int           // default 1000
	BatchBytes     int           // default 1 MiB
	RequestTimeout time.Duration // default 30 s (pulls get PullWait more)
	MaxImageSize   int64         // the largest module image FetchImage takes; default DefaultMaxImageSize
	// ProgressEvery: while a backlog drains for longer than this, the link
	// logs its progress this often (sent, left, rate); default 10 s.
	ProgressEvery time.Duration

	// Now is the edge's estimate of the time (store/wallclock), used to sign
	// its SAS tokens; default time.Now. HubTime, if set, is told the hub's
	// clock from every answer (its Date header, Welcome.HubTime), so that a
	// gateway whose clock is wrong can still sign tokens the hub accepts.
	Now     func() time.Time
	HubTime func(time.Time)

	// Nested edges: Forwards reports whether a twin replica is an
	// incarnation of an edge below this one, whose writes this edge sends
	// up with its own; Members lists the members of a twin whose acks its
	// tombstones wait for (default: "hub" alone; a parent adds its
	// children). Both nil for an edge without children.
	Forwards func(crdt.ReplicaID) bool
	Members  func(id string) []string
	// Children, if set, reports the edges below this one with every pull.
	Children func() []protocol.ChildStatus
	// Presence, if set, reports the connection state of the edge's clients
	// with every pull: what changed since the last report (with full, the
	// first pull of a link session: every connected client); ack records
	// it as delivered once the hub answered.
	Presence func(full bool) (report []protocol.Presence, ack func())
	// PresenceChanged, if set, signals a change of the connected clients:
	// the link reports it at once (PathPresence) rather than with the
	// next pull.
	PresenceChanged <-chan struct{}
}

// Status is the link's state for `outpost edge status`.
type Status struct {
	State     string    `json:"state"` // online | offline | connecting | unauthorized (401) | forbidden (403)
	Since     time.Time `json:"since"`
	LastError string    `json:"lastError,omitempty"`
	Sent      int64     `json:"messagesSent"`
	Batches   int64     `json:"batchesSent"`
	TwinsUp   int64     `json:"twinDeltasSent"`
	TwinsDown int64     `json:"twinDeltasReceived"`
	C2D       int64     `json:"c2dReceived"`
	Methods   int64     `json:"methodsInvoked"`
	// Instance is the id the edge's store sends under (its twin replica id).
	Instance string `json:"instance"`
	// HubURL is the hub node the link uses now (one of Options.URLs), and
	// HubSwitches how often the link moved to another node.
	HubURL      string `json:"hubUrl"`
	HubSwitches int64  `json:"hubSwitches"`
	// DuplicateInstance: the hub sees another live instance of this edge's
	// identity (OtherInstances is not empty): a second gateway uses this edge's
	// connection string, or a copy of its data directory runs on another
	// machine.
	DuplicateInstance bool     `json:"duplicateInstance"`
	OtherInstances    []string `json:"otherInstances,omitempty"`
	// InstanceCollisions counts messages the hub stored although it held
	// others with the same sequence numbers from this instance: another
	// edge runs from a copy of this data directory (see docs/operations.md).
	InstanceCollisions int64 `json:"instanceCollisions"`
	// What the edge dropped because the hub deleted identities (or
	// created them again), and what the hub refused for that reason.
	TwinsRemoved    int64 `json:"twinsRemoved"`
	TwinsReset      int64 `json:"twinsReset"`
	MessagesPurged  int64 `json:"messagesPurged"`
	MessagesRefused int64 `json:"messagesRefused"`
	TwinsRefused    int64 `json:"twinDeltasRefused"`
	TombstonesGC    int64 `json:"twinTombstonesCollected"`
	// HubAnswersIgnored counts answers of the hub that claimed more than
	// the edge sent (an acknowledgement beyond the batch, a version vector
	// ahead of the edge's own twin writes): ignored, nothing was dropped.
	HubAnswersIgnored int64 `json:"hubAnswersIgnored"`
	// TwinsNotServed is set while the upstream (a parent edge, for nested
	// edges) answers that it does not take twin changes yet: they stay
	// here, and the link asks again every TwinsNotServedRetry.
	TwinsNotServed string `json:"twinsNotServed,omitempty"`
	// ImagesRefused counts module image downloads stopped because the
	// answer was larger than the hub announced or than MaxImageSize.
	ImagesRefused int64 `json:"imagesRefused"`
}

// Link is the edge's connection to the hub.
type Link struct {
	opts     Options
	log      *slog.Logger
	instance string
	queues   []*queue.Queue // $upstream by priority: p0 … p9, pdefault

	mu               sync.Mutex
	status           Status
	lastLog          time.Time
	lastCollisionLog time.Time
	refusals         int    // requests refused (401, 403) since the last that got through
	others           string // the hub's InstancesHeader on its last answer
	lastOthersLog    time.Time
	lastRefusedLog   time.Time     // the last ERROR line about refused credentials
	upCh             chan struct{} // closed when a request gets through

	tokMu  sync.Mutex
	tok    string
	tokExp time.Time
	// tokAt and tokMono are the time estimate and the monotonic clock
	// when tok was signed: a 401 after the estimate moved (the hub's Date
	// corrected it) is retried at once with a new token.
	tokAt, tokMono time.Time

	calls sync.WaitGroup // method calls in progress

	nodeMu      sync.Mutex
	nodes       []string      // the hub's base URLs
	cur         int           // index in nodes of the node in use
	failedInRow int           // nodes that failed one after the other since the last answer
	failedAt    []time.Time   // when each node last failed (zero: never)
	moved       chan struct{} // closed when the link moves to another node
	switchLog   ratelog.Limiter

	refusedLog ratelog.Limiter // one line per queue every 10 s about messages the hub refused
	ignoredLog ratelog.Limiter // one line per kind every 10 s about answers of the hub that were ignored
	ackLog     ratelog.Limiter // one line per queue every 10 s about acknowledgements the queue could not store

	sent, batches, twinsUp, twinsDown, c2d, methods, collisions atomic.Int64
	removed, reset, purged, refused, stale, collected           atomic.Int64
	imagesRefused, ignored, switches                            atomic.Int64
}

// errIgnoredAnswer ends a session in which the hub answered with more than
// the edge sent (a batch acknowledged beyond its end, a version vector ahead
// of the edge's own twin writes): the answer is ignored and what it claimed
// is sent again. The link stays up (the hub answers), the session starts
// again after the growing backoff, and only the rate-limited line of the
// check is logged.
var errIgnoredAnswer = errors.New("an answer of the hub claimed more than this edge sent and was ignored")

// Upstream queue names in drain order.
func upstreamQueues() []string {
	names := make([]string, 0, 11)
	for p := range 10 {
		names = append(names, fmt.Sprintf("$upstream/p%d", p))
	}
	return append(names, "$upstream/pdefault")
}

// New prepares a link; Run connects.
func New(opts Options) (*Link, error) {
	if len(opts.URLs) == 0 && opts.URL != "" {
		opts.URLs = []string{opts.URL}
	}
	if len(opts.URLs) == 0 || slices.Contains(opts.URLs, "") || opts.DB == nil || opts.Queues == nil || opts.Twins == nil || opts.Identities == nil || opts.Target == nil {
		return nil, errors.New("upstream: URL (or URLs), DB, Queues, Twins, Identities and Target are required")
	}
	opts.setDefaults()
	nodes := make([]string, len(opts.URLs))
	for i, u := range opts.URLs {
		nodes[i] = strings.TrimSuffix(u, "/")
	}
	l := &Link{opts: opts, log: opts.Logger, instance: string(opts.Twins.Replica()), upCh: make(chan struct{}),
		status: Status{State: "connecting", Since: time.Now()}, nodes: nodes, moved: make(chan struct{}), failedAt: make([]time.Time, len(nodes)),
		switchLog: ratelog.Limiter{Every: switchLogEvery}}
	for _, n := range upstreamQueues() {
		q, err := opts.Queues.Queue(n, queue.QueueOptions{})
		if err != nil {
			return nil, err
		}
		l.queues = append(l.queues, q)
	}
	return l, nil
}

func (opts *Options) setDefaults() {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.BackoffMin, 100*time.Millisecond)
	def(&opts.BackoffMax, time.Second)
	def(&opts.RefusedMin, 30*time.Second)
	def(&opts.RefusedMax, 5*time.Minute)
	def(&opts.PullWait, 20*time.Second)
	def(&opts.RequestTimeout, 30*time.Second)
	def(&opts.ProgressEvery, 10*time.Second)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HubTime == nil {
		opts.HubTime = func(time.Time) {}
	}
	if opts.BatchMessages <= 0 {
		opts.BatchMessages = 1000
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = 1 << 20
	}
	if opts.MaxImageSize <= 0 {
		opts.MaxImageSize = DefaultMaxImageSize
	}
	if opts.Client == nil {
		opts.Client = defaultClient(*opts)
	}
}

// Run keeps the link up until ctx is done.
func (l *Link) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	loops := []func(context.Context) error{l.pull, l.drain, l.twins}
	if l.opts.Presence != nil && l.opts.PresenceChanged != nil {
		loops = append(loops, l.presence)
	}
	for i, loop := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.retry(ctx, loop, i == 0) // the pull loop asks again after a refusal
		}()
	}
	wg.Wait()
	l.calls.Wait()
	return nil
}

// Status returns the link's state and counters.
func (l *Link) Status() Status {
	l.mu.Lock()
	st := l.status
	l.mu.Unlock()
	st.OtherInstances = slices.Clone(st.OtherInstances)
	st.DuplicateInstance = len(st.OtherInstances) > 0
	st.Sent, st.Batches, st.TwinsUp, st.TwinsDown = l.sent.Load(), l.batches.Load(), l.twinsUp.Load(), l.twinsDown.Load()
	st.C2D, st.Methods = l.c2d.Load(), l.methods.Load()
	st.Instance, st.InstanceCollisions = l.instance, l.collisions.Load()
	st.TwinsRemoved, st.TwinsReset, st.MessagesPurged = l.removed.Load(), l.reset.Load(), l.purged.Load()
	st.MessagesRefused, st.TwinsRefused, st.TombstonesGC = l.refused.Load(), l.stale.Load(), l.collected.Load()
	st.ImagesRefused, st.HubAnswersIgnored = l.imagesRefused.Load(), l.ignored.Load()
	_, st.HubURL, _ = l.node()
	st.HubSwitches = l.switches.Load()
	return st
}

// retry runs a loop session after session: a session returns when the
// link fails; the next starts after a jittered backoff, or at once when
// another loop got through. After the hub refused the edge's credentials
// only the probe loop asks again, after the slow refused backoff; the
// others wait until a request gets through.
func (l *Link) retry(ctx context.Context, session func(context.Context) error, probe bool) {
	attempt, refusals := 0, 0
	for ctx.Err() == nil {
		up := l.upSignal()
		err := session(ctx)
		if ctx.Err() != nil {
			return
		}
		if isFreshSwitch(err) {
			l.noteError(err) // another node is tried at once, after a jitter
			if !sleepCtx(ctx, switchJitter()) {
				return
			}
			continue
		}
		if l.isUp(up) {
			refusals = 0
			if !errors.Is(err, errIgnoredAnswer) {
				attempt = 0 // it got through before failing: retry at once
			}
		}
		refused := l.down(err)
		var t *time.Timer // nil: wait for another loop to get through
		var wait <-chan time.Time
		switch {
		case !refused:
			t = time.NewTimer(afterFailure(err, backoff(l.opts.BackoffMin, l.opts.BackoffMax, attempt)))
			attempt++
		case probe:
			t = time.NewTimer(backoff(l.opts.RefusedMin, l.opts.RefusedMax, refusals))
			refusals++
		}
		if t != nil {
			wait = t.C
		}
		select {
		case <-wait:
		case <-l.upSignal():
		case <-ctx.Done():
		}
		if t != nil {
			t.Stop()
		}
	}
}

// backoff is min·2^n capped at max, times a jitter in [0.5, 1].
func backoff(lo, hi time.Duration, n int) time.Duration {
	d := lo << min(n, 20)
	if d > hi || d <= 0 {
		d = hi
	}
	return time.Duration(float64(d) * (0.5 + rand.Float64()/2))
}

func (l *Link) upSignal() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.upCh
}

// isUp reports whether the link came up since up was taken.
func (l *Link) isUp(up <-chan struct{}) bool {
	select {
	case <-up:
		return true
	default:
		return false
	}
}

// noteError records the error of a session that moved to another node.
func (l *Link) noteError(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.status.LastError = err.Error()
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// markUp records a request to node i that got through.
func (l *Link) markUp(i int) {
	l.nodeUp(i)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refusals = 0
	if l.status.State != "online" {
		l.log.Info("link online", "hub", l.nodes[i])
		l.status.State, l.status.Since, l.status.LastError = "online", time.Now(), ""
		close(l.upCh)
		l.upCh = make(chan struct{})
	}
}

// down records a failed session and reports whether the hub refused the
// edge's credentials.
func (l *Link) down(err error) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	msg := "link failed"
	if err != nil {
		msg = err.Error()
	}
	if errors.Is(err, errIgnoredAnswer) {
		l.status.LastError = msg // logged, rate-limited, where it was found
		return false
	}
	if he := refusal(err); he != nil {
		l.noteRefusal(he)
		return true
	}
	if l.status.State == "online" {
		l.log.Warn("link offline; messages stay queued", "hub", l.hubNames(), "err", msg)
		l.status.State, l.status.Since = "offline", time.Now()
	} else if l.status.State != "offline" || time.Since(l.lastLog) > time.Minute {
		// While offline, one line a minute is enough.
		l.log.Info("link unavailable; retrying", "hub", l.hubNames(), "err", msg, "offline_for", time.Since(l.status.Since).Round(time.Second))
		l.lastLog = time.Now()
		if l.status.State != "offline" {
			l.status.State, l.status.Since = "offline", time.Now()
		}
	}
	l.status.LastError = msg
	return false
}

// refusedLogEvery: while the hub keeps refusing the edge's credentials,
// the ERROR line is repeated this often (and on every change of state).
const refusedLogEvery = 5 * time.Minute

// refusal returns the hub's answer when err is a refusal of the edge's
// credentials: 401 (wrong key, expired or badly signed token) or 403 (not
// an enabled edge device with SAS keys).
func refusal(err error) *HubError {
	var he *HubError
	if errors.As(err, &he) && (he.Status == http.StatusUnauthorized || he.Status == http.StatusForbidden) {
		return he
	}
	return nil
}

// noteRefusal records a refusal of the edge's credentials (under mu): the
// state says which, an ERROR line names it and what to do (on a change of
// state, then every refusedLogEvery), and the backoff grows.
func (l *Link) noteRefusal(he *HubError) {
	state, what := "unauthorized", "hub refused this edge's credentials (401 unauthorized): check the edge's connection string/key"
	if he.Status == http.StatusForbidden {
		state, what = "forbidden", "hub refused this edge (403 forbidden): check that the device exists at the hub as an enabled edge device with SAS keys (outpost device create ID --edge)"
	}
	l.refusals++
	l.status.LastError = he.Error()
	changed := l.status.State != state
	if changed {
		l.status.State, l.status.Since = state, time.Now()
	}
	if changed || time.Since(l.lastRefusedLog) >= refusedLogEvery {
		l.lastRefusedLog = time.Now()
		l.log.Error(what, "hub", l.hubNames(), "device", l.opts.Edge.DeviceID, "answer", he.Message, "refused_requests", l.refusals,
			"retry_within", l.opts.RefusedMax)
	}
	if changed && l.opts.Refused != nil {
		l.opts.Refused(state, he)
	}
}

// tokenTTL is the lifetime of the edge's own SAS tokens.
const tokenTTL = time.Hour

// token returns a SAS token for the edge device, renewed before expiry. The
// expiry is compared on the time estimate, not the monotonic clock, so a
// clock that was wrong when the token was signed and has been set right
// since (the estimate moved by more than the token's life, either way)
// gets a new token at once.
func (l *Link) token() string {
	l.tokMu.Lock()
	defer l.tokMu.Unlock()
	left := l.tokExp.Sub(l.opts.Now())
	if left < 10*time.Minute || left > tokenTTL+sas.DefaultSkew {
		l.tokAt, l.tokMono = l.opts.Now().Round(0), time.Now()
		l.tokExp = l.tokAt.Add(tokenTTL)
		l.tok = sas.NewToken(l.opts.Edge.Resource(), l.opts.Edge.SharedAccessKey, "", l.tokExp)
	}
	return l.tok
}

// renewToken drops the token: the hub refused it (it may have been signed
// by a clock the hub disagrees with, which the hub's Date has corrected).
func (l *Link) renewToken() {
	l.tokMu.Lock()
	defer l.tokMu.Unlock()
	l.tokExp = time.Time{}
}

// signedOnOtherClock reports whether the time estimate moved since the
// token was signed (by more than the monotonic clock did): the hub's Date
// has corrected a wrong clock, so a new token may be accepted at once.
func (l *Link) signedOnOtherClock() bool {
	l.tokMu.Lock()
	defer l.tokMu.Unlock()
	if l.tokMono.IsZero() {
		return false
	}
	moved := l.opts.Now().Sub(l.tokAt) - time.Since(l.tokMono)
	return moved > time.Minute || moved < -time.Minute
}

// retryAfter reads a Retry-After in seconds (the hub sends no dates),
// capped at maxRetryAfter; 0 when absent or malformed.
func retryAfter(h http.Header) time.Duration {
	n, err := strconv.Atoi(h.Get("Retry-After"))
	if err != nil || n <= 0 {
		return 0
	}
	return min(time.Duration(n)*time.Second, maxRetryAfter)
}

// hubDate tells HubTime the hub's clock from an answer's Date header.
func (l *Link) hubDate(h http.Header) {
	if d, err := http.ParseTime(h.Get("Date")); err == nil {
		l.opts.HubTime(d)
	}
}

// HubError is an error answer from the hub.
type HubError struct {
	Status  int
	Code    string
	Message string
	// RetryAfter is the hub's Retry-After (a 429: the edge has as many
	// link requests in flight as the hub allows it); 0 when absent.
	RetryAfter time.Duration
}

// maxRetryAfter caps the wait a hub may ask for before a retry.
const maxRetryAfter = 30 * time.Second

func (e *HubError) Error() string { return fmt.Sprintf("hub: %d %s: %s", e.Status, e.Code, e.Message) }

// post sends one frame and decodes the answer. A 429 with Retry-After
// (the hub limits the requests one edge has in flight) is waited out and
// the frame sent again, within timeout: the link is busy, not down.
func (l *Link) post(ctx context.Context, path string, in, out any, timeout time.Duration) error {
	body, enc, err := protocol.Encode(in)
	if err != nil {
		return err
	}
	return l.postEncoded(ctx, path, body, enc, out, timeout)
}

// postEncoded is post of a frame encoded already (protocol.Encode).
func (l *Link) postEncoded(ctx context.Context, path string, body []byte, enc string, out any, timeout time.Duration) error {
	parent := ctx // its end is the link's, not a node's failure
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resigned := false
	for {
		i, base, moved := l.node()
		err := l.nodeFailure(parent, i, l.postOnce(ctx, i, base, moved, path, body, enc, out))
		var he *HubError
		if !resigned && errors.As(err, &he) && he.Status == http.StatusUnauthorized && l.signedOnOtherClock() {
			resigned = true // signed by a clock the hub's Date has corrected since: sign again, once
			continue
		}
		if !errors.As(err, &he) || he.Status != http.StatusTooManyRequests || he.RetryAfter <= 0 {
			return err
		}
		t := time.NewTimer(he.RetryAfter)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// postOnce sends one frame to node i at base; moved is closed when the
// link moves away from that node, which cancels the request.
func (l *Link) postOnce(ctx context.Context, i int, base string, moved <-chan struct{}, path string, body []byte, enc string, out any) error {
	if len(l.nodes) > 1 { // a single hub's link never moves: no watcher per request
		var cancel context.CancelFunc
		ctx, cancel = untilMoved(ctx, moved)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", protocol.ContentType)
	req.Header.Set("Authorization", l.token())
	if enc != "" {
		req.Header.Set("Content-Encoding", enc)
	}
	resp, err := l.opts.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	l.hubDate(resp.Header)
	if resp.StatusCode == http.StatusUnauthorized {
		l.renewToken()
	}
	if resp.StatusCode != http.StatusOK {
		return hubError(resp, retryAfter(resp.Header))
	}
	if err := protocol.Decode(resp.Body, resp.Header.Get("Content-Encoding"), out); err != nil {
		return fmt.Errorf("answer to %s: %w", path, err)
	}
	l.markUp(i)
	l.noteOthers(resp.Header.Get(protocol.InstancesHeader))
	l.preferLeader(i, resp.Header.Get(protocol.LeaderHeader))
	return nil
}

// noteOthers records the other live instances of this edge's identity the
// hub named (none: the header is absent) and logs a change, and every
// refusedLogEvery while it lasts.
func (l *Link) noteOthers(others string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	changed := others != l.others
	if changed { // every answer carries it: split only what is new
		l.others = others
		l.status.OtherInstances = nil
		if others != "" {
			l.status.OtherInstances = strings.Split(others, ",")
		}
	}
	switch {
	case others == "" && changed:
		l.log.Info("the hub no longer sees another edge with this edge's identity", "device", l.opts.Edge.DeviceID)
	case others != "" && (changed || time.Since(l.lastOthersLog) >= refusedLogEvery):
		l.lastOthersLog = time.Now()
		if slices.Contains(l.status.OtherInstances, l.instance) {
			l.log.Warn("another edge pulls under this edge's instance id (a copy of this data directory on the same machine id): "+
				"give the copy its own machine id (--machine-id-file) or a fresh data directory, and its own device identity",
				"device", l.opts.Edge.DeviceID, "instance", l.instance, "other_instances", others)
			return
		}
		l.log.Warn("another edge is online with this edge's identity (a second gateway with this connection string, or a copy of this data directory): "+
			"give each gateway its own device identity (outpost device create ID --edge), or stop the other",
			"device", l.opts.Edge.DeviceID, "instance", l.instance, "other_instances", others)
	}
}

// hubNames names the hub in log lines: its URL, or the nodes of a cluster.
func (l *Link) hubNames() string {
	return strings.Join(l.nodes, ",")
}

func tlsConfig(opts Options) *tls.Config {
	return &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12}
}
