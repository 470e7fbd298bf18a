package broker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/queue"
)

func selfSigned(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// An account with a certThumbprint logs in with that TLS client
// certificate (with its name as user name, or none); another certificate
// is refused as bad credentials.
func TestGenericCertThumbprintLogin(t *testing.T) {
	cam, other := selfSigned(t, "cam"), selfSigned(t, "other")
	doc := `{"mqttBroker":{"accounts":[{"name":"cam","certThumbprint":"` + identity.Thumbprints(cam.Certificate[0])[1] + `","clientIds":"cam-*"}],
	  "authorizations":[{"identities":["cam"],"allow":[{"operations":["mqtt:publish"],"resources":["cams/#"]}]}]}}`
	accts, err := ParseAccounts([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	pol, err := ParsePolicy([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, "", queue.Options{}, func(o *Options) {
		o.Accounts, o.Policy = accts, pol
		o.TLS = "127.0.0.1:0"
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{selfSigned(t, "127.0.0.1")}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	})
	dial := func(id, user string, cert tls.Certificate) error {
		o := paho.NewClientOptions().AddBroker("ssl://" + e.b.Addr("tls").String()).SetClientID(id).SetUsername(user).
			SetTLSConfig(&tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}}). // the test checks client auth
			SetAutoReconnect(false).SetProtocolVersion(4)
		c := paho.NewClient(o)
		tok := c.Connect()
		if !tok.WaitTimeout(5 * time.Second) {
			t.Fatal("connect timed out")
		}
		if tok.Error() == nil {
			wait(t, c.Publish("cams/1", 1, false, "frame"))
			c.Disconnect(0)
		}
		return tok.Error()
	}
	if err := dial("cam-1", "cam", cam); err != nil {
		t.Fatalf("certificate with the account's name: %v", err)
	}
	if err := dial("cam-2", "", cam); err != nil {
		t.Fatalf("certificate without a user name: %v", err)
	}
	// Another certificate: refused. Without a user name it is taken for an
	// IoT Hub identity's X.509 login (as before accounts), refused as IoT
	// Hub refuses (3.1.1: not authorized).
	for _, c := range []struct {
		user string
		cert tls.Certificate
		want string
	}{{"cam", other, "bad user name or password"}, {"", other, "not Authorized"}} {
		if err := dial("cam-3", c.user, c.cert); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("another certificate (user %q): %v, want %q", c.user, err, c.want)
		}
	}
	if err := dial("robot", "", cam); err == nil || !strings.Contains(err.Error(), "identifier rejected") {
		t.Errorf("client id outside the pattern: %v", err)
	}
}
