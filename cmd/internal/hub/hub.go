// Package hub composes `outpost hub`: the hub's store and service
// (sync/hub) behind an HTTP(S) listener, and the owner connection string.
package hub

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/httpserver"
	"github.com/outpost-edge/outpost/store/identity/sas"
	synchub "github.com/outpost-edge/outpost/sync/hub"
)

// Defaults of flags.
const (
	DefaultMaxImageMiB     = synchub.DefaultMaxImageSize >> 20 // --max-image-size
	DefaultMaxLinkRequests = synchub.DefaultMaxLinkFrames      // --max-link-requests
	DefaultRequestTimeout  = synchub.DefaultRequestDeadline    // --request-timeout
)

// Config is what `outpost hub` is told on its command line.
type Config struct {
	DataDir         string
	Listen          string
	Hostname        string
	TLSCert, TLSKey string
	OwnerKey        string // base64; empty: generated once and kept in <data>/owner.connection-string
	Retention       time.Duration
	MaxImageMiB     int64         // largest module image the store takes (DefaultMaxImageMiB)
	MaxLinkRequests int           // link requests in flight per edge (DefaultMaxLinkRequests)
	RequestTimeout  time.Duration // per REST request, streams exempt (DefaultRequestTimeout)
	Logger          *slog.Logger
	Stdout          io.Writer
}

// Ready is written to <data>/ready.json once the hub serves.
type Ready struct {
	URL      string `json:"url"`
	HostName string `json:"hostName"`
	PID      int    `json:"pid"`
}

const ownerFile = "owner.connection-string"

// Run serves the hub until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(cfg.DataDir, "ready.json"))
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", cfg.Listen, err)
	}
	defer ln.Close()
	host := cfg.Hostname
	if host == "" {
		host = hostFor(ln.Addr().(*net.TCPAddr))
	}
	key, err := ownerKey(cfg, host)
	if err != nil {
		return err
	}
	h, err := synchub.Open(ctx, filepath.Join(cfg.DataDir, "store"), synchub.Options{HostName: host, OwnerKey: key, Logger: cfg.Logger, Retention: cfg.Retention,
		ImageDir: filepath.Join(cfg.DataDir, "images"), MaxImageSize: cfg.MaxImageMiB << 20,
		MaxLinkFrames: cfg.MaxLinkRequests, RequestDeadline: cfg.RequestTimeout})
	if err != nil {
		return err
	}
	defer h.Close()
	srv := httpserver.New(h.Handler(), httpserver.Options{Logger: cfg.Logger})
	scheme := "http"
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, srv.TLSConfig)
		scheme = "https"
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	url := scheme + "://" + ln.Addr().String()
	ready, _ := json.Marshal(Ready{URL: url, HostName: host, PID: os.Getpid()})
	if err := writeFileAtomic(filepath.Join(cfg.DataDir, "ready.json"), ready, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(cfg.Stdout, "hub listening on %s\n", url)
	select {
	case <-ctx.Done():
		cfg.Logger.Info("hub stopping")
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	h.Stop()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	_ = os.Remove(filepath.Join(cfg.DataDir, "ready.json"))
	return nil
}

// hostFor names the hub in connection strings: the listen address, with
// localhost for an unspecified host.
func hostFor(a *net.TCPAddr) string {
	if a.IP.IsUnspecified() {
		return net.JoinHostPort("localhost", fmt.Sprint(a.Port))
	}
	return a.String()
}

// ownerKey returns the owner policy's key: --owner-key, or the one kept in
// the owner connection string file (created with a new key on first start,
// rewritten with the current host name on later ones).
func ownerKey(cfg Config, host string) ([]byte, error) {
	if cfg.OwnerKey != "" {
		key, err := base64.StdEncoding.DecodeString(cfg.OwnerKey)
		if err != nil || len(key) == 0 {
			return nil, errors.New("--owner-key must be a base64 key")
		}
		return key, nil
	}
	path := filepath.Join(cfg.DataDir, ownerFile)
	var key []byte
	if data, err := os.ReadFile(path); err == nil {
		cs, err := sas.ParseConnString(string(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w (delete it to make a new owner key)", path, err)
		}
		key = cs.SharedAccessKey
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	} else {
		key = sas.GenerateKey()
	}
	cs := sas.ConnString{HostName: host, SharedAccessKeyName: "owner", SharedAccessKey: key}
	return key, writeFileAtomic(path, []byte(cs.String()+"\n"), 0o600)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
