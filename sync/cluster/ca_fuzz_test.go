package cluster

import (
	"testing"
	"time"
)

// FuzzParseCA: whatever PEM it is given, ParseCA never panics, and what it
// accepts is a CA whose key matches its certificate.
func FuzzParseCA(f *testing.F) {
	ca, err := NewCA("seed", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	node, nodeKey, err := ca.Issue("n1", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ca.CertPEM, ca.KeyPEM)
	f.Add(node, nodeKey)
	f.Add(ca.CertPEM, nodeKey)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), []byte{})
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		got, err := ParseCA(certPEM, keyPEM)
		if err != nil {
			return
		}
		if !got.Cert.IsCA || !got.Key.PublicKey.Equal(got.Cert.PublicKey) {
			t.Fatalf("accepted a CA that is not one or whose key does not match")
		}
	})
}
