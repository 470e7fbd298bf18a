package hub

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/outpost-edge/outpost/cmd/internal/secret"
	synchub "github.com/outpost-edge/outpost/sync/hub"
	"github.com/outpost-edge/outpost/sync/hub/egress"
)

// routesFile is a parsed --routes file, its relative paths resolved.
type routesFile struct {
	path   string
	cfg    *egress.Config
	routes []egress.Route
	cas    map[string][]byte // webhook endpoints' extra CAs, by endpoint
}

// readRoutes reads and checks --routes: the file may hold secrets
// (webhook headers, credential paths), so one that its group or others can
// read is refused, as are bad endpoints and routes.
func readRoutes(path string) (*routesFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--routes: %w", err)
	}
	if msg := secret.ModeWarning(path); msg != "" {
		return nil, fmt.Errorf("--routes: %s; the hub does not start with it", msg)
	}
	rf := &routesFile{path: path, cas: map[string][]byte{}}
	if rf.cfg, rf.routes, err = egress.ParseConfig(path, data); err != nil {
		return nil, fmt.Errorf("--routes: %w", err)
	}
	dir := filepath.Dir(path)
	for i := range rf.cfg.Endpoints {
		ep := &rf.cfg.Endpoints[i]
		if ep.Credentials != "" {
			ep.Credentials = resolve(dir, ep.Credentials)
			if _, err := os.Stat(ep.Credentials); err != nil {
				return nil, fmt.Errorf("--routes: %s: endpoint %q: credentials: %w", path, ep.Name, err)
			}
		}
		if ep.CA != "" {
			ep.CA = resolve(dir, ep.CA)
			if rf.cas[ep.Name], err = os.ReadFile(ep.CA); err != nil {
				return nil, fmt.Errorf("--routes: %s: endpoint %q: ca: %w", path, ep.Name, err)
			}
		}
	}
	return rf, nil
}

func resolve(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// router makes the endpoints and the router over h; hubID prefixes
// JetStream's message ids (the hub's incarnation, the same on every node
// of a cluster).
func (rf *routesFile) router(h *synchub.Hub, hubID string, log *slog.Logger) (*egress.Router, error) {
	eps := map[string]egress.Endpoint{}
	closeAll := func() {
		for _, ep := range eps {
			_ = ep.Close()
		}
	}
	for _, ec := range rf.cfg.Endpoints {
		ep, err := egress.Dial(ec, egress.DialOptions{HubID: hubID, CA: rf.cas[ec.Name]})
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("--routes %s: %w", rf.path, err)
		}
		eps[ec.Name] = ep
	}
	rt, err := egress.New(egress.Options{Log: h, Logger: log, Endpoints: eps, Routes: rf.routes})
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("--routes %s: %w", rf.path, err)
	}
	return rt, nil
}

// runRoutes starts the router; the function it returns stops it, waits
// for it (it commits the cursors it delivered) and closes the endpoints.
func runRoutes(ctx context.Context, rt *egress.Router, h *synchub.Hub) (stop func()) {
	h.AddMetrics(rt.WriteMetrics)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = rt.Run(rctx)
	}()
	return func() {
		cancel()
		<-done
		_ = rt.Close()
	}
}
