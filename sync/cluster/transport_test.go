package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// A node whose certificate comes from another CA is added to the
// configuration, yet can neither accept the leader's connections nor dial in:
// it never receives a log entry.
func TestNodeFromAnotherCANeverGetsTheLog(t *testing.T) {
	c := newTestCluster(t)
	leader := c.threeNodes(nil)
	other, err := NewCA("another cluster", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fsm := newMapFSM()
	evil := c.open(fastOptions("evil", t.TempDir(), c.tlsFor(other, "evil"), fsm))
	if err := leader.AddVoter(ctxT(t, 10*time.Second), "evil", evil.Addr()); err != nil {
		t.Fatal(err)
	}
	c.applyMany(leader, "a", 50)
	// The leader keeps dialing evil to replicate; evil refuses each handshake.
	eventually(t, 10*time.Second, "evil never refused the leader's connection", func() bool {
		return evil.Rejected() >= 2
	})
	if st := evil.Stats(); st.LastIndex != 0 || fsm.applied.Load() != 0 {
		t.Fatalf("node with a foreign certificate got the log: stats %+v, applied %d", st, fsm.applied.Load())
	}
	// Dialing in fails too: evil does not trust the cluster's server certificate.
	_, err = evil.stream.Dial(raft.ServerAddress(leader.Addr()), 2*time.Second)
	var unknown x509UnknownAuthority
	if err == nil || !errors.As(err, &unknown) {
		t.Fatalf("dial from a foreign node: got %v, want an unknown-authority error", err)
	}
	if err := leader.Remove(ctxT(t, 10*time.Second), "evil"); err != nil {
		t.Fatal(err)
	}
	evil.Close()
	c.waitSame(50)
}

// Clients that trust the cluster CA but present no certificate, or one from
// another CA, are refused by the node's accept side.
func TestAcceptRefusesClientsWithoutClusterCertificate(t *testing.T) {
	c := newTestCluster(t)
	n := c.start("n1", func(o *Options) { o.Bootstrap = true })
	other, err := NewCA("another cluster", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	noCert := c.tlsFor(c.ca, "x").Clone()
	noCert.Certificates = nil
	foreign := c.tlsFor(other, "y").Clone()
	foreign.RootCAs = c.tlsFor(c.ca, "z").RootCAs // trusts the node, but is not trusted by it
	for i, cfg := range []*tls.Config{noCert, foreign} {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", n.Addr(), cfg)
		if err == nil {
			// TLS 1.3: the client finishes first; the server's verdict arrives on read.
			conn.SetDeadline(time.Now().Add(2 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("client %d: got %v, want a certificate error", i, err)
		}
		want := uint64(i + 1)
		eventually(t, 5*time.Second, "node did not count the refused handshake", func() bool {
			return n.Rejected() == want
		})
	}
	// A cluster member's connection is accepted and not counted.
	conn, err := n.stream.Dial(raft.ServerAddress(n.Addr()), 2*time.Second)
	if err != nil {
		t.Fatalf("dial with the cluster's own certificate: %v", err)
	}
	conn.Close()
	if got := n.Rejected(); got != 2 {
		t.Fatalf("rejected = %d after a good connection, want 2", got)
	}
}

func TestOpenRefusesTransportWithoutMutualTLS(t *testing.T) {
	c := newTestCluster(t)
	good := c.tlsFor(c.ca, "n1")
	noClientCAs := good.Clone()
	noClientCAs.ClientCAs = nil
	noCert := good.Clone()
	noCert.Certificates = nil
	for name, cfg := range map[string]*tls.Config{"nil": nil, "no ClientCAs": noClientCAs, "no certificate": noCert} {
		_, err := Open(ctxT(t, time.Second), fastOptions("n1", t.TempDir(), cfg, newMapFSM()))
		if err == nil || !strings.Contains(err.Error(), "TLS") {
			t.Errorf("%s: got %v, want an error about Options.TLS", name, err)
		}
	}
	opts := fastOptions("n1", t.TempDir(), good, newMapFSM())
	opts.RaftAddr = "0.0.0.0:0"
	if _, err := Open(ctxT(t, time.Second), opts); err == nil || !strings.Contains(err.Error(), "Advertise") {
		t.Errorf("unspecified bind without Advertise: got %v, want an error naming Advertise", err)
	}
}

type x509UnknownAuthority = x509.UnknownAuthorityError

func TestAcceptBoundsHandshakesInFlight(t *testing.T) {
	c := newTestCluster(t)
	n := c.start("n1", func(o *Options) { o.Bootstrap = true; o.HandshakeTimeout = time.Minute })
	before := n.Rejected()
	// Idle sockets that never say hello hold every handshake slot...
	for range maxHandshakes {
		conn, err := net.Dial("tcp", n.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
	}
	eventually(t, 5*time.Second, "idle sockets did not fill the handshake slots", func() bool {
		return len(n.stream.slots) == maxHandshakes
	})
	// ...so the next one is closed at once, not left for the deadline.
	conn, err := net.Dial("tcp", n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read on a connection past the cap: %v, want it closed by the node", err)
	}
	if got := n.Rejected(); got != before+1 {
		t.Fatalf("rejected = %d, want %d", got, before+1)
	}
}
