package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-edge/outpost/store/identity/sas"
)

// Errors. Callers match them with errors.Is; returned errors add details.
var (
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("client closed")
	// ErrNotConnected: Connect has not succeeded yet.
	ErrNotConnected = errors.New("not connected (call Connect first)")
	// ErrConnectionLost: the connection ended before the broker answered;
	// the request may or may not have taken effect (a message may have been
	// stored: send it again with the same MessageID).
	ErrConnectionLost = errors.New("connection lost before the broker answered")
	// ErrRefused: the broker refused the credentials (CONNACK) or a
	// subscription (SUBACK). Connect does not retry these.
	ErrRefused = errors.New("refused by the broker")
)

// Client is a connection to an IoT Hub style MQTT broker (an outpost edge,
// or IoT Hub itself) as one device or module. It is safe for concurrent
// use. Register handlers before Connect; handlers registered later
// subscribe on the live connection.
type Client struct {
	cfg      config
	log      *slog.Logger
	cs       sas.ConnString
	addr     string      // host:port
	tls      *tls.Config // nil: plain TCP
	clientID string
	username string

	events string // devices/{d}[/modules/{m}]/messages/events/
	inputs string // devices/{d}/modules/{m}/inputs/ ("" for devices)
	c2d    string // devices/{d}/messages/devicebound/

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the reconnect loop and background work
	rid    atomic.Uint64

	// Handlers run on these, one at a time each, in arrival order.
	msgQ, desiredQ, methodQ *serial

	mu         sync.Mutex
	started    bool // the first Connect succeeded
	connecting bool
	closed     bool
	conn       *conn
	ready      chan struct{} // closed when conn is set
	h          handlers
	ds         desiredState
}

type handlers struct {
	inputs    map[string]func(Message)
	anyInput  func(Message)
	c2d       func(Message)
	desired   func(map[string]any, int64)
	methods   map[string]MethodHandler
	anyMethod func(name string, payload []byte) (int, []byte)
	unhandled map[string]bool // inputs without a handler, warned about once
}

// conn is one MQTT connection; a reconnection makes a new one, so nothing
// (an acknowledgement, a pending request) ever crosses connections.
type conn struct {
	pc      paho.Client
	lost    chan struct{}
	once    sync.Once
	err     error // why it ended; read after lost is closed
	renewAt time.Time

	mu      sync.Mutex
	pending map[string]chan response // twin requests by $rid
	subs    map[string]bool          // filters granted on this connection
	subMu   sync.Mutex               // serialises subscribeMissing
}

func (cn *conn) markLost(err error) {
	cn.once.Do(func() {
		cn.err = err
		close(cn.lost)
	})
}

func (cn *conn) isLost() bool {
	select {
	case <-cn.lost:
		return true
	default:
		return false
	}
}

// FromConnectionString makes a client for the device or module of a
// connection string (`HostName=…;DeviceId=…[;ModuleId=…];SharedAccessKey=…
// [;GatewayHostName=…]`). It connects over TLS to GatewayHostName when set
// (port 8883 unless the name carries one), else to HostName on port 8883;
// WithBroker overrides that. It does not connect: call Connect.
func FromConnectionString(connString string, opts ...Option) (*Client, error) {
	cs, err := sas.ParseConnString(connString)
	if err != nil {
		return nil, err
	}
	return newClient(cs, opts...)
}

func newClient(cs sas.ConnString, opts ...Option) (*Client, error) {
	switch {
	case cs.DeviceID == "":
		return nil, fmt.Errorf("%w: it is a hub policy's; the client needs a device's or a module's", sas.ErrConnString)
	case cs.X509:
		return nil, fmt.Errorf("%w: x509=true is not supported by this client; use a SharedAccessKey", sas.ErrConnString)
	}
	cfg := defaults()
	for _, o := range opts {
		o(&cfg)
	}
	c := &Client{cfg: cfg, log: cfg.log, cs: cs, clientID: cs.DeviceID, ready: make(chan struct{})}
	if err := c.setBroker(); err != nil {
		return nil, err
	}
	c.username = cs.HostName + "/" + cs.DeviceID + "/?api-version=" + APIVersion
	c.events = "devices/" + cs.DeviceID + "/messages/events/"
	if cs.ModuleID != "" {
		c.clientID += "/" + cs.ModuleID
		c.username = cs.HostName + "/" + c.clientID + "/?api-version=" + APIVersion
		c.events = "devices/" + cs.DeviceID + "/modules/" + cs.ModuleID + "/messages/events/"
		c.inputs = "devices/" + cs.DeviceID + "/modules/" + cs.ModuleID + "/inputs/"
	}
	c.c2d = "devices/" + cs.DeviceID + "/messages/devicebound/"
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.msgQ, c.desiredQ, c.methodQ = newSerial(), newSerial(), newSerial()
	c.h = handlers{inputs: map[string]func(Message){}, methods: map[string]MethodHandler{}, unhandled: map[string]bool{}}
	c.log = c.log.With("client_id", c.clientID)
	return c, nil
}

// setBroker works out where to connect and how.
func (c *Client) setBroker() error {
	host, secure := c.cs.GatewayHostName, true
	if host == "" {
		// IoT Hub's MQTT port, whatever port HostName names (an outpost
		// hub's HostName carries the port of its REST API).
		host = c.cs.HostName
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	if c.cfg.broker != "" {
		u, err := url.Parse(c.cfg.broker)
		if err != nil || u.Host == "" {
			return fmt.Errorf("broker address %q: want scheme://host[:port], e.g. ssl://edge:8883 or tcp://127.0.0.1:1883", c.cfg.broker)
		}
		switch strings.ToLower(u.Scheme) {
		case "ssl", "tls", "mqtts":
		case "tcp", "mqtt":
			secure = false
		default:
			return fmt.Errorf("broker address %q: scheme %q is not supported (use ssl:// or tcp://)", c.cfg.broker, u.Scheme)
		}
		host = u.Host
	}
	port := "8883"
	if !secure {
		port = "1883"
	}
	if h, p, err := net.SplitHostPort(host); err == nil {
		c.addr = net.JoinHostPort(h, p)
		host = h
	} else {
		host = strings.Trim(host, "[]")
		c.addr = net.JoinHostPort(host, port)
	}
	if !secure {
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			c.log.Warn("plain MQTT to a non-loopback address: the SAS token crosses the network in clear", "broker", c.addr)
		}
		return nil
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.cfg.tls != nil {
		t = c.cfg.tls.Clone()
	}
	if t.RootCAs == nil {
		t.RootCAs = c.cfg.roots
	}
	if t.ServerName == "" {
		t.ServerName = host
	}
	c.tls = t
	return nil
}

// DeviceID is the client's device id.
func (c *Client) DeviceID() string { return c.cs.DeviceID }

// ModuleID is the client's module id, "" for a device.
func (c *Client) ModuleID() string { return c.cs.ModuleID }

// IsConnected reports whether a connection is up right now.
func (c *Client) IsConnected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn != nil && !c.conn.isLost()
}

// Connect makes the first connection, subscribes to what the registered
// handlers need and, with a desired-properties handler, delivers the
// twin's desired properties. Network failures are retried (jittered
// exponential backoff) until ctx is done; a refusal (bad credentials, an
// identity the broker does not know, a subscription denied) is returned at
// once, wrapping ErrRefused. Once connected, the client reconnects on its
// own, forever, until Close.
func (c *Client) Connect(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return ErrClosed
	case c.started || c.connecting:
		c.mu.Unlock()
		return errors.New("connect: already connected or connecting")
	}
	c.connecting = true
	c.mu.Unlock()
	ctx, stop := joinContexts(ctx, c.ctx)
	defer stop()
	cn, err := c.connectFirst(ctx)
	c.mu.Lock()
	c.connecting = false
	if err == nil {
		if c.closed { // Close came while we connected
			err = ErrClosed
		} else {
			c.started = true
			c.wg.Add(1) // under mu: Close waits for run
		}
	}
	c.mu.Unlock()
	if err != nil {
		if cn != nil {
			c.hangUp(cn, err)
		}
		return fmt.Errorf("connect %s to %s: %w", c.clientID, c.addr, err)
	}
	for _, q := range []*serial{c.msgQ, c.desiredQ, c.methodQ} {
		q.start()
	}
	go c.run(cn)
	return nil
}

func (c *Client) connectFirst(ctx context.Context) (*conn, error) {
	var last error // the most telling failure: a timeout only if nothing else
	for attempt := 0; ; attempt++ {
		cn, err := c.connectOnce(ctx)
		if err == nil {
			return cn, nil
		}
		if errors.Is(err, ErrRefused) || errors.Is(err, ErrClosed) {
			return nil, err
		}
		timeout := errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
		if last == nil || !timeout {
			last = err
		}
		c.log.Debug("connection attempt failed", "attempt", attempt+1, "err", err)
		if ctx.Err() != nil || !sleep(ctx, c.backoff(attempt)) {
			return nil, errors.Join(last, ctx.Err())
		}
	}
}

// run keeps the client connected until Close: it waits for the current
// connection to end (or its token to near expiry) and makes a new one.
func (c *Client) run(cn *conn) {
	defer c.wg.Done()
	for {
		renew := time.NewTimer(time.Until(cn.renewAt))
		renewing := false
		select {
		case <-cn.lost:
			c.log.Warn("connection lost", "err", cn.err)
		case <-renew.C:
			renewing = true
			c.log.Debug("renewing the connection before its SAS token expires")
			c.hangUp(cn, errors.New("SAS token renewal"))
		case <-c.ctx.Done():
			renew.Stop()
			return
		}
		renew.Stop()
		c.dropConn(cn)
		if cn = c.reconnect(renewing); cn == nil {
			return
		}
		if !renewing {
			c.log.Info("connection back")
		}
	}
}

// reconnect tries until it connects (or the client closes: nil).
func (c *Client) reconnect(immediate bool) *conn {
	for attempt := 0; ; attempt++ {
		if !(immediate && attempt == 0) && !sleep(c.ctx, c.backoff(attempt)) {
			return nil
		}
		cn, err := c.connectOnce(c.ctx)
		if err == nil {
			return cn
		}
		if c.ctx.Err() != nil {
			return nil
		}
		level := slog.LevelDebug
		if attempt == 0 || errors.Is(err, ErrRefused) && attempt%10 == 0 {
			level = slog.LevelWarn
		}
		c.log.Log(c.ctx, level, "reconnection failed; retrying", "attempt", attempt+1, "err", err)
	}
}

// backoff is the delay before retry attempt n (from 0): exponential from
// the minimum to the maximum, with jitter so that the clients of a
// restarted broker do not all come back at once.
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.maxBackoff
	if n < 30 {
		if e := c.cfg.minBackoff << n; e < d && e > 0 {
			d = e
		}
	}
	return d/2 + rand.N(d/2+1)
}

// connectOnce dials, subscribes, syncs the desired properties and installs
// the connection.
func (c *Client) connectOnce(ctx context.Context) (*conn, error) {
	cn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.setup(ctx, cn); err != nil {
		c.hangUp(cn, err)
		return nil, err
	}
	return cn, nil
}

// dial opens one MQTT connection with a fresh SAS token.
func (c *Client) dial(ctx context.Context) (*conn, error) {
	now := time.Now()
	cn := &conn{lost: make(chan struct{}), pending: map[string]chan response{}, subs: map[string]bool{}}
	cn.renewAt = now.Add(max(c.cfg.tokenTTL*85/100, time.Second))
	token := sas.NewToken(c.cs.Resource(), c.cs.SharedAccessKey, "", now.Add(c.cfg.tokenTTL))

	var mu sync.Mutex
	var raw net.Conn
	var openErr error
	o := paho.NewClientOptions().AddBroker("tcp://" + c.addr).
		SetClientID(c.clientID).SetUsername(c.username).SetPassword(token).
		SetProtocolVersion(4).SetCleanSession(false).
		SetAutoReconnect(false).SetConnectRetry(false).
		SetOrderMatters(true).SetAutoAckDisabled(true).
		SetKeepAlive(c.cfg.keepAlive).SetPingTimeout(min(c.cfg.keepAlive, 10*time.Second)).
		SetConnectTimeout(c.cfg.connectTimeout).SetWriteTimeout(c.cfg.connectTimeout).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { c.route(cn, m) }).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			cn.markLost(err)
			c.dropConn(cn)
		}).
		SetCustomOpenConnectionFn(func(*url.URL, paho.ClientOptions) (net.Conn, error) {
			nc, err := c.open(ctx)
			mu.Lock()
			defer mu.Unlock()
			raw, openErr = nc, err
			return nc, err
		})
	cn.pc = paho.NewClient(o)
	// Close (or the caller's ctx) aborts the CONNECT/CONNACK exchange.
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if raw != nil {
			raw.Close()
		}
	})
	tok := cn.pc.Connect()
	<-tok.Done()
	stop()
	if err := tok.Error(); err != nil {
		mu.Lock()
		defer mu.Unlock()
		if openErr != nil {
			err = openErr
		}
		if rc := tok.(*paho.ConnectToken).ReturnCode(); rc >= 1 && rc <= 5 && rc != 3 {
			err = fmt.Errorf("%w: CONNACK %v (check the connection string's key and that the identity exists on this edge)", ErrRefused, err)
		}
		return nil, err
	}
	if ctx.Err() != nil {
		c.hangUp(cn, ctx.Err())
		return nil, ctx.Err()
	}
	return cn, nil
}

// open makes the network connection, TLS included.
func (c *Client) open(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.connectTimeout)
	defer cancel()
	d := &net.Dialer{}
	if c.tls == nil {
		return d.DialContext(ctx, "tcp", c.addr)
	}
	td := &tls.Dialer{NetDialer: d, Config: c.tls}
	return td.DialContext(ctx, "tcp", c.addr)
}

// setup prepares a new connection and makes it the current one.
func (c *Client) setup(ctx context.Context, cn *conn) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.requestTimeout)
	defer cancel()
	c.mu.Lock()
	wantDesired := c.h.desired != nil
	c.mu.Unlock()
	if wantDesired {
		c.ds.beginSync()
	}
	if _, err := c.subscribeMissing(ctx, cn); err != nil {
		if wantDesired {
			c.ds.endSync(c, nil)
		}
		return err
	}
	if wantDesired {
		c.syncDesired(ctx, cn)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.conn = cn
	close(c.ready)
	c.mu.Unlock()
	// Handlers registered during the setup subscribe now.
	c.refresh(cn)
	return nil
}

// dropConn forgets a connection that ended.
func (c *Client) dropConn(cn *conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == cn {
		c.conn = nil
		c.ready = make(chan struct{})
	}
}

// hangUp ends a connection on our side.
func (c *Client) hangUp(cn *conn, why error) {
	cn.markLost(why)
	c.dropConn(cn)
	cn.pc.Disconnect(250)
}

// current waits for a live connection until ctx is done. A live
// connection is returned even while the client closes, so that handlers
// finishing their work can still send.
func (c *Client) current(ctx context.Context) (*conn, error) {
	for {
		c.mu.Lock()
		cn, ready, started, closed := c.conn, c.ready, c.started, c.closed
		c.mu.Unlock()
		if cn != nil && !cn.isLost() {
			return cn, nil
		}
		switch {
		case closed:
			return nil, ErrClosed
		case !started:
			return nil, ErrNotConnected
		}
		if cn != nil {
			ready = nil // lost, not yet dropped: wait for the drop or the next one
			select {
			case <-time.After(10 * time.Millisecond):
			case <-ctx.Done():
				return nil, fmt.Errorf("waiting for the connection: %w", ctx.Err())
			}
			continue
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the connection: %w", ctx.Err())
		case <-c.ctx.Done():
			return nil, ErrClosed
		}
	}
}

// Close ends the client: queued messages that no handler has started are
// left unacknowledged (the broker sends them again on the next
// connection), running handlers are waited for (they may still send on
// the live connection), then the connection is closed and every goroutine
// the client started has ended. A handler must not call Close (it would
// wait for itself): cancel something its owner waits for instead.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	for _, q := range []*serial{c.msgQ, c.desiredQ, c.methodQ} {
		q.stop()
	}
	c.wg.Wait()
	c.mu.Lock()
	cn := c.conn
	c.conn = nil
	c.mu.Unlock()
	if cn != nil {
		c.hangUp(cn, ErrClosed)
	}
	return nil
}

// sleep waits d or until ctx is done (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// joinContexts is ctx, also cancelled when other is.
func joinContexts(ctx, other context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(other, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}
