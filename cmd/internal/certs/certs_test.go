package certs

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// clock is an injected time that tests move.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var hosts = []string{"gw1.example", "localhost", "127.0.0.1", "::1"}

func open(t *testing.T, dir string, c *clock) *Local {
	t.Helper()
	l, err := Open(Options{Dir: dir, Hosts: hosts, Name: "test CA", Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestModes(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "certs")
	open(t, dir, &clock{t: time.Now()})
	for name, want := range map[string]os.FileMode{"": 0o700, CAFile: 0o644, CAKeyFile: 0o600, ServerFile: 0o644, ServerKeyFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %04o, want %04o", filepath.Join(dir, name), got, want)
		}
	}
}

// At Open the server certificate stays while more than a third of its
// validity is left, and is renewed after.
func TestRenewAtOpen(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: time.Now()}
	first := open(t, dir, c).Certificate().Leaf
	c.Add(24 * time.Hour)
	if again := open(t, dir, c).Certificate().Leaf; again.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Errorf("a certificate with most of its validity left was replaced at Open")
	}
	c.Add(ServerValidity * 2 / 3)
	l := open(t, dir, c)
	renewed := l.Certificate().Leaf
	if renewed.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatalf("a certificate with less than a third of its validity left (until %s, now %s) was kept", first.NotAfter, c.Now())
	}
	verify(t, l, renewed, c.Now())
	// A restart with other host names issues for them.
	l2, err := Open(Options{Dir: dir, Hosts: []string{"other.example"}, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if got := l2.Certificate().Leaf; got.VerifyHostname("other.example") != nil {
		t.Errorf("host names changed, certificate kept: %v", got.DNSNames)
	}
}

func verify(t *testing.T, l *Local, c *x509.Certificate, now time.Time) {
	t.Helper()
	pool, err := LoadCAs(l.CAPath(), "ca")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: "gw1.example", CurrentTime: now}); err != nil {
		t.Errorf("server certificate does not verify with %s: %v", l.CAPath(), err)
	}
}

// While serving, a handshake after the certificate entered its renewal
// window gets a new one, over real TLS.
func TestRenewWhileServing(t *testing.T) {
	c := &clock{t: time.Now()}
	l := open(t, t.TempDir(), c)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", l.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = conn.(*tls.Conn).Handshake(); _, _ = io.Copy(io.Discard, conn); conn.Close() }()
		}
	}()
	pool, err := LoadCAs(l.CAPath(), "ca")
	if err != nil {
		t.Fatal(err)
	}
	served := func() *x509.Certificate {
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "gw1.example", Time: c.Now})
		if err != nil {
			t.Fatalf("handshake at %s: %v", c.Now(), err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0]
	}
	first := served()
	c.Add(ServerValidity / 2)
	if got := served(); got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Errorf("renewed with half its validity left")
	}
	c.Add(ServerValidity / 4) // a quarter left
	renewed := served()
	if renewed.SerialNumber.Cmp(first.SerialNumber) == 0 || !renewed.NotAfter.After(first.NotAfter) {
		t.Fatalf("not renewed with a quarter of its validity left: until %s, now %s", renewed.NotAfter, c.Now())
	}
	// The renewed certificate is on disk for the next start.
	if again := open(t, l.opts.Dir, c).Certificate().Leaf; again.SerialNumber.Cmp(renewed.SerialNumber) != 0 {
		t.Errorf("renewed certificate not kept on disk")
	}
}

// A CA near its end is signed again with the same key: what the old copy
// signed verifies under the new one.
func TestCARenewedWithSameKey(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: time.Now()}
	l := open(t, dir, c)
	c.Add(CAValidity * 3 / 4)
	// Signed by the old copy just before the renewal.
	certPEM, keyPEM, err := issue(l.ca, l.caKey, hosts, c.Now().Add(-time.Hour), ServerValidity)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	oldLeaf := pair.Leaf
	l2 := open(t, dir, c)
	if l2.ca.SerialNumber.Cmp(l.ca.SerialNumber) == 0 {
		t.Fatalf("CA with a quarter of its validity left not renewed")
	}
	if !l2.caKey.Equal(l.caKey) {
		t.Fatalf("CA renewed with a new key: every client would need the new CA at once")
	}
	pool, _ := LoadCAs(l2.CAPath(), "ca")
	at := c.Now().Add(time.Hour)
	if _, err := oldLeaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "gw1.example", CurrentTime: at}); err != nil {
		t.Errorf("old server certificate does not verify under the renewed CA: %v", err)
	}
}

func TestLoadCAs(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	_ = os.WriteFile(bad, []byte("nope"), 0o644)
	if _, err := LoadCAs(bad, "--hub-ca"); err == nil {
		t.Error("a file without PEM loaded")
	}
	if _, err := LoadCAs(filepath.Join(dir, "missing"), "--hub-ca"); err == nil {
		t.Error("a missing file loaded")
	}
}

// A CA key that is not the CA certificate's is refused at Open, not used
// to sign server certificates no client would verify.
func TestMismatchedCAKeyRefused(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	c := &clock{t: time.Now()}
	open(t, a, c)
	open(t, b, c)
	key, err := os.ReadFile(filepath.Join(b, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a, CAKeyFile), key, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Dir: a, Hosts: hosts, Name: "test CA", Now: c.Now}); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("Open with another CA's key: %v, want a mismatch error", err)
	}
}
