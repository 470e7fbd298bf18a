package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/outpost-edge/outpost/cmd/internal/httpserver"
	"github.com/outpost-edge/outpost/sync/downstream"
)

// newDownstream makes the server of the edge link to child edges when
// --downstream is set (nested edges): before the link, which sends up the
// twin writes of the edges below and waits for their acks to collect
// tombstones.
func (e *edge) newDownstream() error {
	if e.cfg.Downstream == "" {
		return nil
	}
	srv, err := downstream.New(downstream.Options{Edge: e.cs.DeviceID, HostName: e.cs.HostName, DB: e.db, Queues: e.queues,
		Identities: e.ids, Twins: e.twins, Replica: string(e.twins.Replica()), Logger: e.cfg.Logger, Now: e.clock.Now,
		Members: e.twinMembers, // a child's changes are its subtree's reported properties: nothing local to notify
		// The clients below a child go up with this edge's own (presence.go).
		OnPresence: e.clientsChanged,
		// Module images from this edge's cache, fetched through its own link when missing.
		Image: func(ctx context.Context, digest string) (string, error) { return e.sup.Image(ctx, digest) }})
	if err != nil {
		return err
	}
	e.downstream = srv
	return nil
}

// twinMembers are the replicas a twin's tombstones wait for: the hub (when
// the edge has one) and the child edge whose subtree holds the twin.
func (e *edge) twinMembers(id string) []string {
	var m []string
	if e.hubURL != "" {
		m = append(m, "hub")
	}
	if e.downstream != nil {
		m = append(m, e.downstream.ChildMembers(id)...)
	}
	return m
}

// serveDownstream serves the edge link to child edges on --downstream, over
// TLS with the edge's certificate (its local CA's unless --tls-cert is
// given); nil when the flag is not set. Close stops the listener and waits
// for its goroutine.
func (e *edge) serveDownstream() (io.Closer, error) {
	if e.downstream == nil {
		return nil, nil
	}
	tlsCfg, ca, err := e.serverTLS()
	if err != nil {
		return nil, err
	}
	tlsCfg.ClientAuth = tls.NoClientCert // children prove themselves with their edge SAS tokens
	srv := e.downstream
	ln, err := net.Listen("tcp", e.cfg.Downstream)
	if err != nil {
		return nil, fmt.Errorf("--downstream %s: %w", e.cfg.Downstream, err)
	}
	hs := httpserver.New(srv.Handler(), httpserver.Options{Logger: e.cfg.Logger}) // downstream sets each request's deadlines
	hs.TLSConfig = tlsCfg
	e.ready.Downstream = ln.Addr().String()
	if ca != "" {
		e.ready.CA = ca
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.cfg.Logger.Error("downstream listener stopped", "err", err)
		}
	}()
	e.cfg.Logger.Info("serving the edge link to child edges", "addr", ln.Addr().String())
	return closerFunc(func() error { err := hs.Close(); <-done; return err }), nil
}

// closerFunc is a function as an io.Closer.
type closerFunc func() error

func (f closerFunc) Close() error { return f() }
