package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// streamLayer is raft's transport over mutual TLS 1.3. Incoming connections
// are handshaken off the accept path (one goroutine each, bounded by a
// deadline) so a slow or hostile peer cannot stall raft's accept loop, and only
// peers whose certificate the cluster CA signed reach raft. At most
// maxHandshakes handshakes run at once: beyond that a connection is closed
// at once and counted as rejected, so a flood of idle sockets costs neither
// unbounded goroutines nor memory (a cluster has 3 or 5 members).
type streamLayer struct {
	ln        net.Listener
	advertise net.Addr
	server    *tls.Config
	client    *tls.Config
	handshake time.Duration
	log       *slog.Logger

	conns    chan net.Conn
	slots    chan struct{} // one per handshake in flight
	done     chan struct{}
	base     context.Context // cancelled by Close
	stopBase context.CancelFunc
	wg       sync.WaitGroup
	once     sync.Once
	rejected atomic.Uint64
}

// maxHandshakes bounds the incoming TLS handshakes in flight.
const maxHandshakes = 32

func newStreamLayer(bind string, advertise net.Addr, cfg *tls.Config, handshake time.Duration, log *slog.Logger) (*streamLayer, error) {
	server, client, err := mutualTLS(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("listen for raft on %s: %w", bind, err)
	}
	if advertise == nil {
		advertise = ln.Addr()
		if a, ok := advertise.(*net.TCPAddr); ok && a.IP.IsUnspecified() {
			ln.Close()
			return nil, fmt.Errorf("raft address %s is not one peers can dial: set Options.Advertise", bind)
		}
	}
	s := &streamLayer{ln: ln, advertise: advertise, server: server, client: client, handshake: handshake,
		log: log, conns: make(chan net.Conn), slots: make(chan struct{}, maxHandshakes), done: make(chan struct{})}
	s.base, s.stopBase = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// mutualTLS derives the server and client sides from one configuration and
// refuses one that would not authenticate both ends against a CA.
func mutualTLS(cfg *tls.Config) (server, client *tls.Config, err error) {
	switch {
	case cfg == nil:
		return nil, nil, errors.New("raft transport needs Options.TLS: build it with cluster.TLSConfig")
	case len(cfg.Certificates) == 0 && cfg.GetCertificate == nil:
		return nil, nil, errors.New("Options.TLS has no node certificate: issue one with CA.Issue")
	case cfg.ClientCAs == nil || cfg.RootCAs == nil:
		return nil, nil, errors.New("Options.TLS must set both RootCAs and ClientCAs to the cluster CA")
	}
	server = cfg.Clone()
	server.ClientAuth = tls.RequireAndVerifyClientCert
	server.MinVersion = tls.VersionTLS13
	client = cfg.Clone()
	client.MinVersion = tls.VersionTLS13
	client.InsecureSkipVerify = false
	if client.ServerName == "" {
		client.ServerName = ServerName
	}
	if client.GetClientCertificate == nil && len(client.Certificates) == 0 {
		return nil, nil, errors.New("Options.TLS has no client certificate for dialing peers")
	}
	return server, client, nil
}

func (s *streamLayer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-s.done:
				return
			case <-time.After(50 * time.Millisecond): // e.g. EMFILE: back off, do not spin
			}
			continue
		}
		select {
		case s.slots <- struct{}{}:
		default:
			s.rejected.Add(1)
			s.log.Warn("raft connection refused: too many TLS handshakes in flight", "remote", c.RemoteAddr().String(),
				"max_handshakes", maxHandshakes)
			c.Close()
			continue
		}
		s.wg.Add(1)
		go s.serverHandshake(c)
	}
}

func (s *streamLayer) serverHandshake(c net.Conn) {
	defer s.wg.Done()
	tc := tls.Server(c, s.server)
	// base is cancelled by Close: the handshake also ends when the layer closes.
	ctx, cancel := context.WithTimeout(s.base, s.handshake)
	defer cancel()
	err := tc.HandshakeContext(ctx)
	<-s.slots
	if err != nil {
		s.rejected.Add(1)
		s.log.Warn("raft connection refused: TLS handshake failed; the peer needs a certificate from this cluster's CA",
			"remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	select {
	case s.conns <- tc:
	case <-s.done:
		tc.Close()
	}
}

// Accept returns the next authenticated incoming connection.
func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Dial opens an authenticated connection to a peer: the peer's certificate
// must chain to the cluster CA, and ours is presented to it.
func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: s.client}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", string(addr))
	if err != nil {
		return nil, fmt.Errorf("dial raft peer %s over TLS: %w", addr, err)
	}
	return c, nil
}

// Close stops accepting and waits for the handshakes in flight.
func (s *streamLayer) Close() error {
	var err error
	s.once.Do(func() {
		close(s.done)
		s.stopBase()
		err = s.ln.Close()
		s.wg.Wait()
	})
	return err
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

// Rejected counts incoming connections whose TLS handshake failed.
func (s *streamLayer) Rejected() uint64 { return s.rejected.Load() }
