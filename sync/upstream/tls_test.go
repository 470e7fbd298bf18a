package upstream

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestLinkVerifiesHubCertificate: over TLS the hub's certificate must chain
// to the CAs given (--hub-ca) or the system's; one from another CA is
// refused and the link stays offline, whatever else is configured.
func TestLinkVerifiesHubCertificate(t *testing.T) {
	cases := []struct {
		name   string
		roots  func(srv *httptest.Server) *x509.CertPool
		online bool
	}{
		{"the hub's CA", func(srv *httptest.Server) *x509.CertPool {
			p := x509.NewCertPool()
			p.AddCert(srv.Certificate())
			return p
		}, true},
		{"another CA", func(*httptest.Server) *x509.CertPool {
			p := x509.NewCertPool()
			p.AddCert(otherCA(t))
			return p
		}, false},
		{"the system's roots", func(*httptest.Server) *x509.CertPool { return nil }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnvWith(t, func(e *env) {
				srv := httptest.NewTLSServer(e.srv.Config.Handler)
				t.Cleanup(srv.Close)
				var err error
				e.link, err = New(Options{URL: srv.URL, Edge: e.edgeCS, DB: e.db, Queues: e.queues, Twins: e.twins, Identities: e.ids,
					Target: e.rec, PullWait: time.Second, RootCAs: c.roots(srv)})
				if err != nil {
					t.Fatal(err)
				}
			})
			if c.online {
				eventually(t, "the link online", func() bool { return e.link.Status().State == "online" })
				return
			}
			eventually(t, "the link refusing the certificate", func() bool {
				return strings.Contains(e.link.Status().LastError, "certificate signed by unknown authority")
			})
			time.Sleep(300 * time.Millisecond)
			if st := e.link.Status(); st.State == "online" {
				t.Fatalf("the link came online with a certificate from another CA: %+v", st)
			}
		})
	}
}

// otherCA returns a self-signed CA certificate for 127.0.0.1 that signed
// nothing the test servers present.
func otherCA(t *testing.T) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "another CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
