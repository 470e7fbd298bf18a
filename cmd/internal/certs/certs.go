// Package certs keeps a local CA and the server certificate it signs, for
// an edge or a hub that was given no certificate: <dir>/ca.pem (0644, what
// clients trust), <dir>/ca-key.pem (0600), <dir>/server.pem and
// <dir>/server-key.pem (0600). The server certificate is renewed before it
// expires: at Open when less than a third of its validity is left, and
// while serving, by GetCertificate, once it enters that window. It starts no
// goroutines.
package certs

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/secret"
)

// Validity of what Local makes.
const (
	CAValidity     = 10 * 365 * 24 * time.Hour
	ServerValidity = 2 * 365 * 24 * time.Hour
)

// File names in the directory.
const (
	CAFile        = "ca.pem"
	CAKeyFile     = "ca-key.pem"
	ServerFile    = "server.pem"
	ServerKeyFile = "server-key.pem"
)

// Options configure Open.
type Options struct {
	Dir   string   // created 0700 if missing
	Hosts []string // names and IP addresses the server certificate covers; the first is its common name
	// Name is the CA's common name, e.g. "Outpost edge local CA".
	Name string
	// Now is the time certificates are made and renewed by (default
	// time.Now); the edge passes its time estimate, since a certificate
	// made while the wall clock says 1970 would expire in 1972.
	Now    func() time.Time
	Logger *slog.Logger // default slog.Default()
	// Validity of the server certificates it issues (default
	// ServerValidity); tests make short-lived ones.
	Validity time.Duration
}

// Local is a local CA and its current server certificate.
type Local struct {
	opts  Options
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey

	mu   sync.Mutex
	leaf *tls.Certificate
}

// Open loads the CA in o.Dir or makes one, and loads the server
// certificate or issues one when it is missing, not the CA's, does not
// cover o.Hosts, or has less than a third of its validity left.
func Open(o Options) (*Local, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Name == "" {
		o.Name = "Outpost local CA"
	}
	if o.Validity <= 0 {
		o.Validity = ServerValidity
	}
	if len(o.Hosts) == 0 {
		return nil, fmt.Errorf("local CA in %s: no host names for the server certificate", o.Dir)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("local CA: %w", err)
	}
	l := &Local{opts: o}
	var err error
	if l.ca, l.caKey, err = loadOrCreateCA(o); err != nil {
		return nil, fmt.Errorf("local CA in %s: %w", o.Dir, err)
	}
	if leaf, ok := l.loadLeaf(); ok {
		l.leaf = leaf
		return l, nil
	}
	if l.leaf, err = l.renew(); err != nil {
		return nil, err
	}
	return l, nil
}

// CAPath is the CA certificate clients trust.
func (l *Local) CAPath() string { return filepath.Join(l.opts.Dir, CAFile) }

// Certificate returns the current server certificate.
func (l *Local) Certificate() *tls.Certificate {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leaf
}

// GetCertificate is tls.Config.GetCertificate: the current server
// certificate, renewed first when it has entered its renewal window. A
// failed renewal keeps the current one (logged) until it expires.
func (l *Local) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !dueForRenewal(l.leaf.Leaf, l.opts.Now()) {
		return l.leaf, nil
	}
	leaf, err := l.renew()
	if err != nil {
		l.opts.Logger.Error("server certificate not renewed; the current one stays until it expires",
			"not_after", l.leaf.Leaf.NotAfter, "err", err)
		return l.leaf, nil
	}
	l.opts.Logger.Info("server certificate renewed", "not_after", leaf.Leaf.NotAfter)
	l.leaf = leaf
	return leaf, nil
}

// TLSConfig serves the current server certificate, renewing it as it goes.
func (l *Local) TLSConfig() *tls.Config {
	return &tls.Config{GetCertificate: l.GetCertificate, MinVersion: tls.VersionTLS12}
}

// dueForRenewal: less than a third of the certificate's validity is left.
func dueForRenewal(c *x509.Certificate, now time.Time) bool {
	validity := c.NotAfter.Sub(c.NotBefore)
	return c.NotAfter.Sub(now) < validity/3
}

// loadLeaf returns the server certificate on disk if it may stay.
func (l *Local) loadLeaf() (*tls.Certificate, bool) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(l.opts.Dir, ServerFile), filepath.Join(l.opts.Dir, ServerKeyFile))
	if err != nil {
		return nil, false
	}
	c := cert.Leaf
	if c == nil || c.CheckSignatureFrom(l.ca) != nil || dueForRenewal(c, l.opts.Now()) {
		return nil, false
	}
	return &cert, covers(c, l.opts.Hosts)
}

// covers reports whether c was issued for exactly hosts.
func covers(c *x509.Certificate, hosts []string) bool {
	var have []string
	have = append(have, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		have = append(have, ip.String())
	}
	want := make([]string, 0, len(hosts))
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			h = ip.String()
		}
		want = append(want, h)
	}
	slices.Sort(have)
	slices.Sort(want)
	return slices.Equal(slices.Compact(have), slices.Compact(want))
}

// renew issues a new server certificate and writes it.
func (l *Local) renew() (*tls.Certificate, error) {
	certPEM, keyPEM, err := issue(l.ca, l.caKey, l.opts.Hosts, l.opts.Now(), l.opts.Validity)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	if err := secret.Write(filepath.Join(l.opts.Dir, ServerKeyFile), keyPEM); err != nil {
		return nil, err
	}
	if err := secret.WritePublic(filepath.Join(l.opts.Dir, ServerFile), certPEM); err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &cert, nil
}

// LocalCA makes (or reuses) a CA in dir and a server certificate for
// hosts: dir/ca.pem, dir/server.pem, dir/server-key.pem. Tests and first
// setups use it for a hub's TLS.
func LocalCA(dir string, hosts []string) (caPath string, err error) {
	return LocalCAValid(dir, hosts, ServerValidity)
}

// LocalCAValid is LocalCA with a server certificate valid for validity
// (from now; scenarios make certificates about to expire).
func LocalCAValid(dir string, hosts []string, validity time.Duration) (caPath string, err error) {
	l, err := Open(Options{Dir: dir, Hosts: hosts, Validity: validity})
	if err != nil {
		return "", err
	}
	return l.CAPath(), nil
}

// LoadCAs reads the PEM certificates of path into a pool; flag names the
// option in errors.
func LoadCAs(path, flag string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in it", flag, path)
	}
	return pool, nil
}

// Hosts returns hosts without duplicates or empty names, in order.
func Hosts(hosts ...string) []string {
	var out []string
	for _, h := range hosts {
		if h != "" && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}
