package client

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"time"
)

// Defaults of the options.
const (
	DefaultTokenTTL       = time.Hour
	DefaultMinBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff     = 10 * time.Second
	DefaultKeepAlive      = 60 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	// DefaultRequestTimeout bounds the requests the client makes on its
	// own after each connect (SUBSCRIBE, twin GET), not the caller's.
	DefaultRequestTimeout = 30 * time.Second
)

// APIVersion is the IoT Hub api-version sent in the MQTT username.
const APIVersion = "2021-04-12"

// Option changes how a Client connects.
type Option func(*config)

type config struct {
	broker         string // "" = derived from the connection string
	tls            *tls.Config
	roots          *x509.CertPool
	log            *slog.Logger
	minBackoff     time.Duration
	maxBackoff     time.Duration
	tokenTTL       time.Duration
	keepAlive      time.Duration
	connectTimeout time.Duration
	requestTimeout time.Duration
}

func defaults() config {
	return config{
		log:        slog.New(slog.DiscardHandler),
		minBackoff: DefaultMinBackoff, maxBackoff: DefaultMaxBackoff,
		tokenTTL: DefaultTokenTTL, keepAlive: DefaultKeepAlive,
		connectTimeout: DefaultConnectTimeout, requestTimeout: DefaultRequestTimeout,
	}
}

// WithBroker overrides the broker address derived from the connection
// string: "tcp://127.0.0.1:1883" (plain MQTT, for loopback only: the SAS
// token crosses in clear) or "ssl://host:8883" ("tls://" and "mqtts://"
// mean the same, "mqtt://" means "tcp://"). Without a port, 8883 (TLS) or
// 1883 (plain) is used.
func WithBroker(url string) Option { return func(c *config) { c.broker = url } }

// WithTLSConfig sets the TLS configuration of TLS connections. ServerName
// is filled in from the broker host when empty; RootCAs from WithRootCAs
// when nil.
func WithTLSConfig(cfg *tls.Config) Option { return func(c *config) { c.tls = cfg } }

// WithRootCAs sets the certificate authorities trusted for the broker's
// certificate (the edge's CA for modules and leaf devices) instead of the
// system roots.
func WithRootCAs(pool *x509.CertPool) Option { return func(c *config) { c.roots = pool } }

// WithLogger sets where the client logs connection events (connection
// lost, connection back, refusals). Messages are never logged. The
// default discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.log = l
		}
	}
}

// WithBackoff sets the bounds of the jittered exponential delay between
// reconnection attempts (default 100 ms to 10 s).
func WithBackoff(minDelay, maxDelay time.Duration) Option {
	return func(c *config) {
		if minDelay > 0 {
			c.minBackoff = minDelay
		}
		if maxDelay >= c.minBackoff {
			c.maxBackoff = maxDelay
		}
	}
}

// WithTokenTTL sets the lifetime of the SAS token signed for each
// connection (default 1 h). A connection is renewed, with a new token,
// shortly before its token expires, since MQTT 3.1.1 has no other way to
// re-authenticate.
func WithTokenTTL(ttl time.Duration) Option {
	return func(c *config) {
		if ttl > 0 {
			c.tokenTTL = ttl
		}
	}
}

// WithKeepAlive sets the MQTT keep-alive interval (default 60 s): how soon
// a silently dead connection is noticed.
func WithKeepAlive(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.keepAlive = d
		}
	}
}

// WithConnectTimeout bounds one connection attempt (TCP, TLS, CONNECT and
// CONNACK; default 10 s).
func WithConnectTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.connectTimeout = d
		}
	}
}
