package cluster

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCAIssuesNodeCertificatesForBothEnds(t *testing.T) {
	ca, err := NewCA("c1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("c2", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("n1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "n1" || cert.IsCA {
		t.Fatalf("node certificate: CN %q, IsCA %v", cert.Subject.CommonName, cert.IsCA)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		roots := x509.NewCertPool()
		roots.AddCert(ca.Cert)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: ServerName, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("verify for %v against its CA: %v", usage, err)
		}
		foreign := x509.NewCertPool()
		foreign.AddCert(other.Cert)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: foreign, KeyUsages: []x509.ExtKeyUsage{usage}}); err == nil {
			t.Errorf("verified for %v against another CA", usage)
		}
	}
	if _, err := TLSConfig(ca.CertPEM, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	if _, err := TLSConfig([]byte("junk"), certPEM, keyPEM); err == nil {
		t.Error("TLSConfig accepted a CA that is not PEM")
	}
}

func TestCASaveLoad(t *testing.T) {
	ca, err := NewCA("c1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := ca.Save(certPath, keyPath); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode %v, want 0600", fi.Mode().Perm())
	}
	back, err := LoadCA(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Cert.Equal(ca.Cert) || !back.Key.Equal(ca.Key) {
		t.Fatal("loaded CA differs from the saved one")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	node, _, err := ca.Issue("n1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCA(node, ca.KeyPEM); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("ParseCA of a node certificate: %v", err)
	}
	other, _ := NewCA("c2", time.Hour)
	if _, err := ParseCA(ca.CertPEM, other.KeyPEM); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("ParseCA with another CA's key: %v", err)
	}
}
