package localapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/httpserver"
	"github.com/outpost-edge/outpost/cmd/internal/webui"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/store/ratelog"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// Options are what the API serves; the edge assembly provides them.
type Options struct {
	// Addr is the listen address (e.g. 127.0.0.1:18081). On a loopback
	// address status, metrics and the dashboard page are open; on any
	// other address only /healthz is.
	Addr string
	// DataDir holds the operator token (api-token), created at first start.
	DataDir string
	// Hostname is the edge's --hostname, accepted in the Host header
	// besides IP literals and localhost.
	Hostname string
	Logger   *slog.Logger

	Status func() Status
	// LiveStatus, when set, is what the live view samples while no
	// dashboard watches: Uplink, Broker.Received and the queues' names and
	// depths only, cheaper than Status (nil: Status).
	LiveStatus func() Status
	// Twin returns a twin's service JSON (twin.ErrNotFound: 404).
	Twin func(id string) ([]byte, error)
	// ReadQueue returns up to n messages after seq; ok is false when there
	// is no such queue.
	ReadQueue func(name string, after uint64, n int) (msgs []queue.Message, ok bool, err error)
	// KnownDevice reports whether id is a leaf device in the identity
	// cache (cloud-to-device messages go only to those).
	KnownDevice func(id string) bool
	SendC2D     func(ctx context.Context, device string, m queue.Message) error
	// Invoke calls a direct method on a device or module (d or d/m).
	Invoke func(ctx context.Context, target, name string, payload []byte, timeout time.Duration) protocol.MethodResult
	// Logs copies a module's output to w (supervisor.ErrNoModule: 404).
	Logs func(ctx context.Context, module string, tail int, follow bool, w io.Writer) error

	// Restart restarts a module (supervisor.ErrNoModule: 404); nil: none.
	Restart func(ctx context.Context, module string) error
	// TwinFields lists up to max twins' registers for the dashboard; nil:
	// the dashboard shows no twins.
	TwinFields func(max int) ([]TwinFields, error)
	// Clients lists the connected MQTT clients, sorted by client id and
	// bounded by the broker's connection cap; nil: GET /clients is 404.
	Clients func() []MQTTClient
	// LiveInterval is how often the dashboard's live view samples Status
	// (default 1 s); Streams bound its event streams.
	LiveInterval time.Duration
	Streams      webui.StreamOptions

	// MaxResponseBytes caps one queue listing (default MaxQueueResponse).
	MaxResponseBytes int
	// Now is the clock of login codes and sessions (default time.Now).
	Now func() time.Time
}

// Server timeouts. No global ReadTimeout or WriteTimeout: log follows and
// direct methods are long; ordinary handlers set their own deadline.
// Variables only so that tests can shorten them.
var (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 16 << 10
	handlerDeadline   = 30 * time.Second
)

// Server is a running local API.
type Server struct {
	opts     Options
	ln       net.Listener
	srv      *http.Server
	done     chan struct{}
	token    []byte
	loopback bool
	secrets  *secrets
	refusals ratelog.Limiter
	live     *live
}

// Open creates the operator token if it is missing, listens on
// opts.Addr and serves in a goroutine until Close.
func Open(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	tok, err := loadOrCreateToken(opts.DataDir)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("--api %s: %w", opts.Addr, err)
	}
	s := &Server{opts: opts, ln: ln, token: tok, done: make(chan struct{}), secrets: newSecrets(opts.Now), live: newLive(opts.Streams)}
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		s.loopback = a.IP.IsLoopback()
	}
	s.srv = httpserver.New(s.guard(s.routes()), httpserver.Options{ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes, Logger: opts.Logger})
	go s.runLive()
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			opts.Logger.Error("local API stopped", "err", err)
		}
	}()
	return s, nil
}

// Addr is the address the API listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server, ending open requests (log follows too).
func (s *Server) Close() error {
	s.live.once.Do(func() { close(s.live.stop) })
	<-s.live.done
	err := s.srv.Close()
	<-s.done
	return err
}

// access is who may call a route.
type access int

const (
	public   access = iota // anyone: liveness
	readOnly               // anyone on loopback; with a credential elsewhere
	operator               // the operator token or a browser session
	loginURL               // the login URL itself: its code is the credential
)

// route is one handler with its access class and, for writes, the
// content types it takes and its body limit.
type route struct {
	access   access
	types    []string // writes: accepted media types
	maxBody  int64
	deadline time.Duration // 0: the handler has no deadline (long polls, log follows)
	h        http.HandlerFunc
}

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	json := []string{"application/json"}
	for pattern, r := range map[string]route{
		"GET /healthz":                           {access: public, deadline: handlerDeadline, h: s.healthz},
		"GET /status":                            {access: readOnly, deadline: handlerDeadline, h: s.status},
		"GET /metrics":                           {access: readOnly, deadline: handlerDeadline, h: s.metrics},
		"GET /{$}":                               {access: readOnly, deadline: handlerDeadline, h: webui.EdgePage},
		"GET /assets/{file}":                     {access: public, deadline: handlerDeadline, h: webui.Asset},
		"GET /session":                           {access: readOnly, deadline: handlerDeadline, h: s.session},
		"GET /events/stream":                     {access: readOnly, h: s.stream},
		"GET /dashboard/twins":                   {access: operator, deadline: handlerDeadline, h: s.dashboardTwins},
		"GET /clients":                           {access: operator, deadline: handlerDeadline, h: s.clients},
		"POST /modules/{m}/restart":              {access: operator, types: json, maxBody: 1 << 10, deadline: handlerDeadline, h: s.restart},
		"GET /login":                             {access: loginURL, deadline: handlerDeadline, h: s.login},
		"POST /login-codes":                      {access: operator, types: json, maxBody: 1 << 10, deadline: handlerDeadline, h: s.loginCode},
		"GET /twins/{d}":                         {access: operator, deadline: handlerDeadline, h: s.twin},
		"GET /twins/{d}/modules/{m}":             {access: operator, deadline: handlerDeadline, h: s.twin},
		"GET /queues/{name...}":                  {access: operator, deadline: 2 * handlerDeadline, h: s.queue},
		"POST /devices/{d}/messages/deviceBound": {access: operator, types: []string{"application/json", "application/octet-stream"}, maxBody: protocol.MaxC2D + 1, deadline: handlerDeadline, h: s.c2d},
		"POST /twins/{d}/methods":                {access: operator, types: json, maxBody: maxMethodBody, h: s.method},
		"POST /twins/{d}/modules/{m}/methods":    {access: operator, types: json, maxBody: maxMethodBody, h: s.method},
		"GET /modules/{m}/logs":                  {access: operator, h: s.logs},
	} {
		mux.Handle(pattern, s.check(r))
	}
	return mux
}
