package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/broker/route"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/store/ratelog"
	"github.com/outpost-edge/outpost/store/twin"
)

// Credentials are what a client presents in CONNECT.
type Credentials struct {
	ClientID, Username string
	Password           []byte
	Certificates       []*x509.Certificate // TLS client certificates, leaf first
}

// Authenticator checks a CONNECT against the identity cache.
type Authenticator interface {
	// Authenticate returns what a CONNECT proved; Login.ID must equal the
	// client id.
	Authenticate(Credentials) (Login, error)
	// Recheck tells whether the session of a Login may go on with the
	// identity as it is now: nil, or why the session must end (deleted,
	// disabled, credentials changed). The broker calls it for the live
	// sessions of the identities given to IdentitiesChanged.
	Recheck(Login) error
}

// Login is what a CONNECT proved: the identity, and what its session
// rests on.
type Login struct {
	ID string // the identity ("device" or "device/module"); for a local MQTT account, the client id
	// Account is the local MQTT account (mqttBroker.accounts, or
	// "anonymous") a generic client logged in as; "" for an IoT Hub
	// identity. The free-topic policy knows a generic client by it.
	Account string
	// Expires is when the credentials stop being valid on Options.Now's
	// clock (a SAS token's expiry plus the allowed skew): the session ends
	// then. Zero: they do not expire while connected.
	Expires time.Time
	// Basis is the Authenticator's own record of the credentials, for
	// Recheck; the broker does not look into it.
	Basis any
}

// Options configure a Broker. Queues, Twins and Auth are required.
type Options struct {
	EdgeID string // this edge's device id: modules are EdgeID/<module>
	Auth   Authenticator
	// Generation returns the generationId of an identity ("d" or "d/m"),
	// "" when unknown; messages are stamped with the sender's (see
	// sysGeneration). nil stamps none.
	Generation func(id string) string
	Queues     *queue.Store
	Twins      *twin.Store
	// DB is the store's database, where the MQTT session state of local
	// clients is kept (persist.go: retained messages, wills, persistent
	// sessions); nil keeps it in memory only, lost at a restart. It must
	// be the database of Queues: a free-topic PUBACK waits for a barrier
	// on that database to cover the fan-out's records (freetopic.go).
	DB *kv.DB
	// Routes is the route table in force; nil means the default route
	// (FROM /messages/* INTO $upstream). SetRoutes replaces it at run time.
	Routes *route.Config
	// Policy authorizes free pub/sub topics between local clients; nil
	// refuses them all. SetPolicy replaces it at run time.
	Policy *Policy
	// Accounts are the local MQTT accounts of generic clients
	// (accounts.go); nil admits none. SetAccounts replaces them at run time.
	Accounts *Accounts

	TCP       string // plain MQTT listener address (loopback use), "" for none
	TLS       string // MQTT over TLS, "" for none
	WS        string // MQTT over WebSocket (TLS when TLSConfig is set), "" for none
	TLSConfig *tls.Config

	// StandaloneTwins: no hub feeds this edge, so a twin never written here
	// is genuinely empty and a GET creates it. With a hub, a twin the edge
	// has not yet received is answered 503 instead of an empty twin that
	// would pretend to be the real one.
	StandaloneTwins bool

	// Overflow is the policy of a full queue when the route table sets
	// none (storeAndForwardConfiguration.overflow, a route's overflow).
	Overflow queue.Overflow

	// Now is the clock SAS tokens expire by (the edge's estimate of the
	// time of day); default time.Now.
	Now func() time.Time

	// OnClients, if set, is called (without blocking: it signals) when a
	// client connected or disconnected; the uplink tells the hub.
	OnClients func()

	Logger      *slog.Logger
	MaxPayload  int // bytes; default 256 KiB as IoT Hub
	InputWindow int // unacknowledged messages in flight to one module; default 64

	Limits // connection hygiene (guard.go)
}

// Limits bound what a client can hold, before and after authentication;
// zero means the default (the Default* constants).
type Limits struct {
	ConnectTimeout   time.Duration // accept to authenticated CONNECT, TLS handshake and WebSocket upgrade included; default 10 s
	MaxConnections   int           // open MQTT connections on all listeners; default 4096
	MaxPendingPerIP  int           // connections from one remote IP not yet authenticated; default 64
	MaxPreAuthBytes  int           // MQTT bytes a client may send before it is authenticated, CONNECT included; default 64 KiB
	MaxSubscriptions int           // topic filters one client may hold; default 256
	// MaxInflight is the QoS 1 publishes one client may have unacknowledged
	// towards the broker (MQTT 5 Receive Maximum; a client that exceeds it
	// is disconnected) and the most the broker keeps unacknowledged
	// towards one client; default 1024.
	MaxInflight int
}

// Broker is the edge's MQTT broker.
type Broker struct {
	opts Options
	log  *slog.Logger
	gate *gate // connection limits of every listener
	// refusedLog keeps a client that repeats a refused publish from
	// flooding the log (each refusal is still counted).
	refusedLog ratelog.Limiter
	endedLog   ratelog.Limiter // sessions ended with their credentials
	srv        *mqtt.Server
	routes     atomic.Pointer[route.Config]
	policy     atomic.Pointer[Policy]
	accounts   atomic.Pointer[Accounts]
	pw         *pwChecks

	// generic maps the client id of every generic client mochi holds a
	// session of (live or persistent) to its account; clients not in it
	// are IoT Hub identities. Read on every publish and delivery: its own
	// lock, not mu.
	genericMu sync.RWMutex
	generic   map[string]string
	// stateWrites counts the MQTT session-state writes enqueued
	// (persist.go); a free-topic fan-out that changed it waits for the
	// store before its PUBACK.
	stateWrites atomic.Uint64
	// edgeSource is the stored source of free-topic messages: the edge.
	edgeSource string
	// quiet remembers free topics nobody subscribes to (quiet.go).
	quiet quietTopics

	mu       sync.Mutex
	sessions map[string]*session    // by client id (= identity id)
	pending  map[*mqtt.Client]Login // authenticated, session not yet established
	// pendingSweep is the size of pending at which pend drops closed clients.
	pendingSweep int
	queues       map[string]*queue.Queue
	qopts        map[string]queue.QueueOptions // as last given to the store, by queue name
	methods      *methods
	held         atomic.Int64 // held-back messages written and not yet restored (flow.go)

	stats     Stats
	closing   sync.WaitGroup // ended sessions being closed (ending.go)
	closed    bool           // Close began: no more closing.Add; under mu
	addrs     map[string]net.Addr
	closeOnce sync.Once
	closeErr  error
}

// Stats counts what the broker did with messages; nothing is dropped
// without a count.
type Stats struct {
	Received atomic.Int64 // telemetry messages accepted
	Stored   atomic.Int64 // queue appends made (one message can go to several endpoints), free-topic ones included
	NoRoute  atomic.Int64 // accepted but matched no route (IoT Edge drops these)
	// Publishes on free topics the policy allowed; the queue appends made
	// for those a route FROM /topics/… took (also in Stored); those no
	// route took (local subscribers still get them).
	TopicReceived atomic.Int64
	TopicStored   atomic.Int64
	TopicNoRoute  atomic.Int64
	Refused       atomic.Int64 // publishes refused, all reasons
	RefusedBy     [NumReasons]atomic.Int64
	Delivered     atomic.Int64 // messages delivered to modules and devices and acknowledged
	AuthFailed    atomic.Int64 // CONNECTs refused, all reasons
	// AuthRefusedBy counts refused CONNECTs by reason (login.go).
	AuthRefusedBy [NumAuthReasons]atomic.Int64
	Denied        atomic.Int64 // publishes or subscriptions outside the client's identity
	// Live sessions ended because their identity was deleted or disabled
	// or its credentials changed (SessionsRevoked), or their SAS token
	// expired (SessionsExpired).
	SessionsRevoked atomic.Int64
	SessionsExpired atomic.Int64

	Connections   atomic.Int64 // MQTT connections open now (inline client excluded)
	ConnRefused   atomic.Int64 // connections refused or cut before authentication, all reasons
	ConnRefusedBy [NumConnReasons]atomic.Int64
	SubRefused    atomic.Int64 // topic filters refused by the subscription cap

	// MQTT session state (persist.go): writes that failed or that a full
	// disk refused (that state will not survive a restart), and wills
	// published after a restart for clients connected when the edge died.
	StateFailed       atomic.Int64
	WillsAfterRestart atomic.Int64
}

// Errors.
var (
	ErrNotConnected = errors.New("target is not connected")
	ErrTimeout      = errors.New("timed out")
)

// New builds the broker; Run starts it.
func New(opts Options) (*Broker, error) {
	if opts.Auth == nil || opts.Queues == nil || opts.Twins == nil || opts.EdgeID == "" {
		return nil, errors.New("broker: Auth, Queues, Twins and EdgeID are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxPayload == 0 {
		opts.MaxPayload = 256 << 10
	}
	if opts.InputWindow == 0 {
		opts.InputWindow = 64
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.Limits = opts.Limits.withDefaults()
	b := &Broker{
		opts: opts, log: opts.Logger, edgeSource: "devices/" + opts.EdgeID, sessions: map[string]*session{}, pending: map[*mqtt.Client]Login{}, queues: map[string]*queue.Queue{}, qopts: map[string]queue.QueueOptions{},
		methods: newMethods(), addrs: map[string]net.Addr{},
	}
	b.gate = newGate(opts.Limits, &b.stats, opts.Logger)
	cfg := opts.Routes
	if cfg == nil {
		cfg = route.DefaultConfig()
	}
	b.routes.Store(cfg)
	b.policy.Store(opts.Policy)
	b.accounts.Store(opts.Accounts)
	b.generic = map[string]string{}
	b.pw = newPwChecks(runtime.GOMAXPROCS(0))
	b.srv = mqtt.New(&mqtt.Options{
		Capabilities:           b.capabilities(),
		InlineClient:           true,
		SysTopicResendInterval: 3600,
		// mochi logs every refused packet at WARN with a full dump; our hooks
		// log refusals in one line, so keep only its errors.
		Logger: slog.New(minLevel{slog.LevelError, opts.Logger.Handler()}).With("component", "mqtt"),
	})
	if err := b.srv.AddHook(&hook{b: b}, nil); err != nil {
		return nil, err
	}
	if opts.DB != nil { // after hook: a session is registered before its record is written
		if err := b.srv.AddHook(newPersist(b, opts.DB), nil); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func (b *Broker) capabilities() *mqtt.Capabilities {
	c := mqtt.NewDefaultServerCapabilities()
	c.MaximumMessageExpiryInterval = 0 // our queues, not mochi's inflight, keep messages
	c.MaximumPacketSize = uint32(b.opts.MaxPayload + 64<<10)
	c.MaximumClientWritesPending = 1024
	// QoS 2, retained messages, shared subscriptions and subscription
	// identifiers are for free topics: on IoT Hub topics, as IoT Hub does,
	// QoS 2 publishes are refused (OnPublish), QoS 2 subscriptions granted
	// QoS 1, and `$share/…` refused (OnACLCheck).
	c.MaximumQos = 2
	c.RetainAvailable = 1
	c.SharedSubAvailable = 1
	c.SubIDAvailable = 1
	c.WildcardSubAvailable = 1
	c.TopicAliasMaximum = topicAliasMaximum
	c.ReceiveMaximum = uint16(min(b.opts.MaxInflight, 65535))
	c.MaximumInflight = uint16(min(b.opts.MaxInflight, 65535))
	// A message's own expiry interval still applies (mochi takes the
	// smaller non-zero of the two); reason codes are specific (0x87, not
	// 0x80, for a filter the client may not subscribe to); a PUBACK does
	// not echo the user properties of its PUBLISH.
	c.Compatibilities = mqtt.Compatibilities{NoInheritedPropertiesOnAck: true}
	return c
}

// topicAliasMaximum is how many topic aliases an MQTT 5 client may set
// towards the broker: each holds a topic name for the connection's life.
const topicAliasMaximum = 64

func (o Limits) withDefaults() Limits {
	set := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	set(&o.MaxConnections, DefaultMaxConnections)
	set(&o.MaxPendingPerIP, DefaultMaxPendingPerIP)
	set(&o.MaxPreAuthBytes, DefaultMaxPreAuthBytes)
	set(&o.MaxSubscriptions, DefaultMaxSubscriptions)
	set(&o.MaxInflight, DefaultMaxInflight)
	return o
}

// SetRoutes replaces the route table; messages already queued keep theirs.
func (b *Broker) SetRoutes(cfg *route.Config) { b.routes.Store(cfg) }

// SetPolicy replaces the free-topic authorization policy.
func (b *Broker) SetPolicy(p *Policy) { b.policy.Store(p) }

// Stats returns the broker's counters.
func (b *Broker) Stats() *Stats { return &b.stats }

// Addr returns the bound address of a listener ("tcp", "tls", "ws") once
// Run has started it.
func (b *Broker) Addr(name string) net.Addr {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addrs[name]
}

// Start binds the listeners and starts serving; Run = Start + wait + Close.
func (b *Broker) Start() error {
	for _, l := range []struct {
		name, addr string
		tls        *tls.Config
	}{{"tcp", b.opts.TCP, nil}, {"tls", b.opts.TLS, b.opts.TLSConfig}, {"ws", b.opts.WS, b.opts.TLSConfig}} {
		if l.addr == "" {
			continue
		}
		if l.name == "tls" && l.tls == nil {
			return errors.New("broker: a TLS listener needs a TLS configuration")
		}
		if err := b.listen(l.name, l.addr, l.tls); err != nil {
			return err
		}
	}
	return b.srv.Serve()
}

func (b *Broker) listen(name, addr string, cfg *tls.Config) error {
	raw, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s on %s: %w", name, addr, err)
	}
	// Every connection goes through the gate (guard.go); TLS runs on the
	// guarded connection so the pre-auth deadline covers its handshake.
	gl := &guardListener{Listener: raw, g: b.gate}
	var ln net.Listener = gl
	var l listeners.Listener
	switch {
	case name == "ws":
		gl.raw = true
		if cfg != nil {
			ln = tls.NewListener(ln, cfg)
		}
		ws := newWebsocket(name, ln, b.gate.timeout)
		ws.closeClients = b.closeListenerClients
		l = ws
	case name == "tls":
		gl.tls = cfg
		l = &netListener{id: name, ln: ln, closeClients: b.closeListenerClients}
	default:
		l = &netListener{id: name, ln: ln, closeClients: b.closeListenerClients}
	}
	b.mu.Lock()
	b.addrs[name] = ln.Addr()
	b.mu.Unlock()
	return b.srv.AddListener(l)
}

// Run serves until ctx is done.
func (b *Broker) Run(ctx context.Context) error {
	if err := b.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	return b.Close()
}

// Close disconnects every client and stops the listeners and deliveries.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		all := make([]*session, 0, len(b.sessions))
		for _, s := range b.sessions {
			all = append(all, s)
		}
		b.mu.Unlock()
		for _, s := range all {
			s.stop()
		}
		b.gate.quiesce()
		b.closeErr = b.srv.Close()
		b.closing.Wait()
	})
	return b.closeErr
}

// queue returns (creating on first use) the durable queue of an endpoint at
// a priority.
func (b *Broker) queue(endpoint string, priority int) (*queue.Queue, error) {
	return b.queueNamed(QueueName(endpoint, priority))
}

func (b *Broker) queueNamed(name string) (*queue.Queue, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if q, ok := b.queues[name]; ok {
		return q, nil
	}
	return b.openQueueLocked(name, queue.QueueOptions{Overflow: b.opts.Overflow})
}

// queueFor returns the queue a route target feeds, with the target's cap
// and overflow policy (set again when the route table changed them).
func (b *Broker) queueFor(t route.Target) (*queue.Queue, error) {
	name := QueueName(t.Sink.Endpoint(), t.Priority)
	o := queue.QueueOptions{MaxBytes: t.MaxBytes, Overflow: b.opts.Overflow}
	switch t.Overflow {
	case route.OverflowReject:
		o.Overflow = queue.Reject
	case route.OverflowDropOldest:
		o.Overflow = queue.DropOldest
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if q, ok := b.queues[name]; ok && b.qopts[name] == o {
		return q, nil
	}
	return b.openQueueLocked(name, o)
}

func (b *Broker) openQueueLocked(name string, o queue.QueueOptions) (*queue.Queue, error) {
	q, err := b.opts.Queues.Queue(name, o)
	if err != nil {
		return nil, err
	}
	b.queues[name], b.qopts[name] = q, o
	return q, nil
}

// QueueName is the durable queue of an endpoint at a priority, e.g.
// "$upstream/p0" or "modules/filter/inputs/in1/pdefault".
func QueueName(endpoint string, priority int) string {
	if priority == route.DefaultPriority {
		return endpoint + "/pdefault"
	}
	return fmt.Sprintf("%s/p%d", endpoint, priority)
}

// principal is who the free-topic policy knows a client as: its account
// for a generic client (generic true), else its IoT Hub identity (the
// client id).
func (b *Broker) principal(clientID string) (name string, generic bool) {
	// A live session knows its login for sure: the map below is written
	// by connections and session ends that can interleave on a takeover.
	if s := b.sessionOf(clientID); s != nil {
		if s.login.Account != "" {
			return s.login.Account, true
		}
		return clientID, false
	}
	b.genericMu.RLock()
	defer b.genericMu.RUnlock()
	if a, ok := b.generic[clientID]; ok {
		return a, true
	}
	return clientID, false
}

// setAccount records the account of a generic client id ("" forgets it:
// the id is an IoT Hub identity's, or its session ended for good).
func (b *Broker) setAccount(clientID, account string) {
	b.genericMu.Lock()
	defer b.genericMu.Unlock()
	if account == "" {
		delete(b.generic, clientID)
		return
	}
	b.generic[clientID] = account
}

// write sends a packet to one client, outside mochi's topic fan-out.
func write(cl *mqtt.Client, pk packets.Packet) error { return cl.WritePacket(pk) }

// minLevel drops records below a level.
type minLevel struct {
	min slog.Level
	slog.Handler
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h.min, h.Handler.WithAttrs(a)}
}
func (h minLevel) WithGroup(g string) slog.Handler { return minLevel{h.min, h.Handler.WithGroup(g)} }

// closeListenerClients disconnects the clients of one listener as the
// server closes, as mochi's own does, but from a copy of its client map:
// mochi's Clients.GetByListener takes the map's read lock twice (through
// Len), and a client attaching or leaving meanwhile queues for the write
// lock between the two, which deadlocks Close (seen in CI).
func (b *Broker) closeListenerClients(id string) {
	for _, cl := range b.srv.Clients.GetAll() {
		if cl.Net.Listener == id && !cl.Closed() {
			_ = b.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}
