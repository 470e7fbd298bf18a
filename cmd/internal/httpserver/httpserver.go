// Package httpserver builds the HTTP servers of `outpost hub` and the edge
// with the same connection limits: a deadline for the request header, a
// timeout for idle keep-alive connections and a cap on header bytes.
//
// It sets no ReadTimeout or WriteTimeout: those would cut long polls
// (GET /messages/events, the link's pull), event streams, log follows and
// image transfers. Handlers that are none of those set their own deadline
// with http.ResponseController.
package httpserver

import (
	"log/slog"
	"net/http"
	"time"
)

// Defaults of Options.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
)

// Options bound what one connection can hold; zero fields take the
// defaults.
type Options struct {
	ReadHeaderTimeout time.Duration // from the connection's first byte of a request to the end of its header
	IdleTimeout       time.Duration // a keep-alive connection with no request is closed after this
	MaxHeaderBytes    int           // request line and header
	Logger            *slog.Logger  // net/http's own errors (TLS handshakes, bad requests), at debug
}

// New returns a server for h with the limits of o.
func New(h http.Handler, o Options) *http.Server {
	if o.ReadHeaderTimeout <= 0 {
		o.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    o.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
	}
}
