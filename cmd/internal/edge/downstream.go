package edge

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/outpost-edge/outpost/cmd/internal/httpserver"
	"github.com/outpost-edge/outpost/sync/downstream"
)

// serveDownstream serves the edge link to child edges on --downstream
// (nested edges), over TLS with the edge's certificate (its local CA's
// unless --tls-cert is given); nil when the flag is not set.
func (e *edge) serveDownstream() (*http.Server, error) {
	if e.cfg.Downstream == "" {
		return nil, nil
	}
	tlsCfg, ca, err := e.serverTLS()
	if err != nil {
		return nil, err
	}
	tlsCfg.ClientAuth = tls.NoClientCert // children prove themselves with their edge SAS tokens
	srv, err := downstream.New(downstream.Options{Edge: e.cs.DeviceID, HostName: e.cs.HostName, DB: e.db, Queues: e.queues,
		Identities: e.ids, Replica: string(e.twins.Replica()), Logger: e.cfg.Logger, Now: e.clock.Now})
	if err != nil {
		return nil, err
	}
	e.downstream = srv
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
	go func() {
		if err := hs.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.cfg.Logger.Error("downstream listener stopped", "err", err)
		}
	}()
	e.cfg.Logger.Info("serving the edge link to child edges", "addr", ln.Addr().String())
	return hs, nil
}
