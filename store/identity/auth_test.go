package identity

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/identity/sas"
)

const (
	hub       = "hub.example:8080"
	edgeHost  = "gw1.local"
	edgeScope = "ms-azure-iot-edge://gw1-1a2b3c"
	user      = "/?api-version=2021-04-12"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	c                  *Cache
	keys               map[string][2][]byte
	goodCert, wrongCrt *x509.Certificate
	oldCert, sha256Crt *x509.Certificate
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{keys: map[string][2][]byte{}}
	f.goodCert = newCert(t, "xdev", now.Add(-time.Hour), now.Add(time.Hour))
	f.sha256Crt = newCert(t, "xdev", now.Add(-time.Hour), now.Add(time.Hour))
	f.wrongCrt = newCert(t, "xdev", now.Add(-time.Hour), now.Add(time.Hour))
	f.oldCert = newCert(t, "xdev", now.Add(-2*time.Hour), now.Add(-time.Hour))
	sasID := func(d, m, status string, parents ...string) Identity {
		k := [2][]byte{sas.GenerateKey(), sas.GenerateKey()}
		f.keys[Identity{DeviceID: d, ModuleID: m}.ID()] = k
		return Identity{DeviceID: d, ModuleID: m, Status: status, ParentScopes: parents,
			Auth: Auth{Type: AuthSAS, PrimaryKey: k[0], SecondaryKey: k[1]}}
	}
	edge := sasID("gw1", "", Enabled)
	edge.Edge, edge.DeviceScope = true, edgeScope
	// the old thumbprint in lower case with colons, the new one SHA-256
	colons := strings.ToUpper(sha1Thumb(f.oldCert))
	for i := len(colons) - 2; i > 0; i -= 2 {
		colons = colons[:i] + ":" + colons[i:]
	}
	ids := []Identity{
		edge,
		sasID("gw1", "mod1", Enabled),
		sasID("gw1", "$edgeHub", Enabled),
		sasID("sensor1", "", Enabled, edgeScope),
		sasID("Sensor1", "", Enabled, edgeScope),
		sasID("off", "", Disabled, edgeScope),
		sasID("orphan", "", Enabled),
		sasID("foreign", "", Enabled, "ms-azure-iot-edge://gw2-99"),
		sasID("gw2", "mod1", Enabled),
		{DeviceID: "xdev", Status: Enabled, ParentScopes: []string{edgeScope},
			Auth: Auth{Type: AuthSelfSigned, PrimaryThumbprint: sha1Thumb(f.goodCert), SecondaryThumbprint: sha256Thumb(f.sha256Crt)}},
		{DeviceID: "xold", Status: Enabled, ParentScopes: []string{edgeScope},
			Auth: Auth{Type: AuthSelfSigned, PrimaryThumbprint: colons}},
		{DeviceID: "xca", Status: Enabled, ParentScopes: []string{edgeScope}, Auth: Auth{Type: AuthCA}},
	}
	f.c = openCache(t, openDB(t, ""))
	if err := f.c.Put(context.Background(), ids...); err != nil {
		t.Fatal(err)
	}
	return f
}

// token signs for id with its primary (or secondary) key.
func (f *fixture) token(id, host string, secondary bool, exp time.Time) string {
	d, m, _ := strings.Cut(id, "/")
	k := f.keys[id]
	key := k[0]
	if secondary {
		key = k[1]
	}
	return sas.NewToken(sas.ResourceURI(host, d, m), key, "", exp)
}

func req(clientID, username, password string, certs ...*x509.Certificate) AuthRequest {
	return AuthRequest{ClientID: clientID, Username: username, Password: password, PeerCertificates: certs,
		EdgeDeviceID: "gw1", HostNames: []string{edgeHost, hub}, Now: now}
}

func TestAuthenticate(t *testing.T) {
	f := newFixture(t)
	exp := now.Add(time.Hour)
	tok := func(id string) string { return f.token(id, hub, false, exp) }
	tests := []struct {
		name string
		req  AuthRequest
		errs []error // nil: accepted
	}{
		// accepted
		{"child, primary key", req("sensor1", hub+"/sensor1"+user, tok("sensor1")), nil},
		{"child, secondary key", req("sensor1", hub+"/sensor1"+user, f.token("sensor1", hub, true, exp)), nil},
		{"child, token for the gateway host", req("sensor1", edgeHost+"/sensor1"+user, f.token("sensor1", edgeHost, false, exp)), nil},
		{"token host in other case", req("sensor1", hub+"/sensor1"+user, f.token("sensor1", "HUB.Example:8080", false, exp)), nil},
		{"token host without the hub's port", req("sensor1", hub+"/sensor1"+user, f.token("sensor1", "hub.example", false, exp)), nil},
		{"username host is ignored", req("sensor1", "anything/sensor1"+user, tok("sensor1")), nil},
		{"username with more parameters", req("sensor1", hub+"/sensor1/?api-version=2021-04-12&DeviceClientType=c%2F1&model-id=dtmi:x;1", tok("sensor1")), nil},
		{"username without '?'", req("sensor1", hub+"/sensor1/api-version=2017-06-30/DeviceClientType=Microsoft.Azure.Devices.Client/1.5.1-preview-003", tok("sensor1")), nil},
		{"ids differing only in case are distinct devices", req("Sensor1", hub+"/Sensor1"+user, tok("Sensor1")), nil},
		{"module of this edge", req("gw1/mod1", hub+"/gw1/mod1"+user, tok("gw1/mod1")), nil},
		{"module without '?'", req("gw1/mod1", hub+"/gw1/mod1/api-version=2021-04-12", tok("gw1/mod1")), nil},
		{"$edgeHub module", req("gw1/$edgeHub", hub+"/gw1/$edgeHub"+user, tok("gw1/$edgeHub")), nil},
		{"the edge itself", req("gw1", hub+"/gw1"+user, tok("gw1")), nil},
		{"token expired within skew", req("sensor1", hub+"/sensor1"+user, f.token("sensor1", hub, false, now.Add(-sas.DefaultSkew))), nil},
		{"x509 SHA-1 primary", req("xdev", hub+"/xdev"+user, "", f.goodCert), nil},
		{"x509 SHA-256 secondary", req("xdev", hub+"/xdev"+user, "", f.sha256Crt), nil},

		// client id and username
		{"unknown identity", req("ghost", hub+"/ghost"+user, tok("sensor1")), []error{ErrUnknownIdentity}},
		{"username names another device", req("sensor1", hub+"/orphan"+user, tok("sensor1")), []error{ErrClientIDMismatch}},
		{"username differs in case", req("sensor1", hub+"/Sensor1"+user, tok("sensor1")), []error{ErrClientIDMismatch}},
		{"username names a module", req("gw1", hub+"/gw1/mod1"+user, tok("gw1")), []error{ErrClientIDMismatch}},
		{"client id with two slashes", req("gw1/a/b", hub+"/gw1/a"+user, tok("gw1")), []error{ErrClientIDMismatch}},
		{"empty client id", req("", hub+"/sensor1"+user, tok("sensor1")), []error{ErrClientIDMismatch}},
		{"username without api-version", req("sensor1", hub+"/sensor1/?DeviceClientType=x", tok("sensor1")), []error{ErrBadCredentials}},
		{"username too short", req("sensor1", "sensor1", tok("sensor1")), []error{ErrBadCredentials}},
		{"username without host", req("sensor1", "/sensor1"+user, tok("sensor1")), []error{ErrBadCredentials}},

		// SAS
		{"token of another device", req("sensor1", hub+"/sensor1"+user, tok("orphan")), []error{ErrBadCredentials, sas.ErrWrongResource}},
		{"device token for a module", req("gw1/mod1", hub+"/gw1/mod1"+user, tok("gw1")), []error{ErrBadCredentials, sas.ErrWrongResource}},
		{"token for a foreign host", req("sensor1", hub+"/sensor1"+user, f.token("sensor1", "evil.example", false, exp)), []error{ErrBadCredentials, sas.ErrWrongResource}},
		{"token with another identity's key", req("sensor1", hub+"/sensor1"+user,
			sas.NewToken(hub+"/devices/sensor1", f.keys["orphan"][0], "", exp)), []error{ErrBadCredentials, sas.ErrBadSignature}},
		{"token for Sensor1 signed by sensor1", req("Sensor1", hub+"/Sensor1"+user, tok("sensor1")), []error{ErrBadCredentials, sas.ErrBadSignature}},
		{"expired token", req("sensor1", hub+"/sensor1"+user, f.token("sensor1", hub, false, now.Add(-sas.DefaultSkew-time.Second))), []error{ErrBadCredentials, sas.ErrExpired}},
		{"malformed token", req("sensor1", hub+"/sensor1"+user, "hunter2"), []error{ErrBadCredentials, sas.ErrMalformed}},
		{"SAS for a selfSigned device", req("xdev", hub+"/xdev"+user, tok("sensor1")), []error{ErrBadCredentials}},

		// X.509
		{"no password, no certificate", req("sensor1", hub+"/sensor1"+user, ""), []error{ErrBadCredentials}},
		{"certificate for a SAS device", req("sensor1", hub+"/sensor1"+user, "", f.goodCert), []error{ErrBadCredentials}},
		{"wrong certificate", req("xdev", hub+"/xdev"+user, "", f.wrongCrt), []error{ErrBadCredentials}},
		{"expired certificate", req("xold", hub+"/xold"+user, "", f.oldCert), []error{ErrBadCredentials}},
		{"CA-signed without a trusted CA", req("xca", hub+"/xca"+user, "", f.goodCert), []error{ErrBadCredentials}},
		{"module with a certificate", req("gw1/mod1", hub+"/gw1/mod1"+user, "", f.goodCert), []error{ErrBadCredentials}},

		// status and scope, checked after credentials
		{"disabled", req("off", hub+"/off"+user, tok("off")), []error{ErrDisabled}},
		{"disabled with bad credentials", req("off", hub+"/off"+user, tok("sensor1")), []error{ErrBadCredentials}},
		{"device without parent", req("orphan", hub+"/orphan"+user, tok("orphan")), []error{ErrNotChild}},
		{"child of another edge", req("foreign", hub+"/foreign"+user, tok("foreign")), []error{ErrNotChild}},
		{"module of another device", req("gw2/mod1", hub+"/gw2/mod1"+user, tok("gw2/mod1")), []error{ErrNotChild}},
	}
	for _, tt := range tests {
		id, err := f.c.Authenticate(tt.req)
		if tt.errs == nil {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			} else if id.ID() != tt.req.ClientID {
				t.Errorf("%s: authenticated as %q", tt.name, id.ID())
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: accepted, want %v", tt.name, tt.errs)
			continue
		}
		for _, want := range tt.errs {
			if !errors.Is(err, want) {
				t.Errorf("%s: %v, want %v", tt.name, err, want)
			}
		}
		checkNoSecrets(t, tt.name, err, tt.req, f)
	}
}

func checkNoSecrets(t *testing.T, name string, err error, r AuthRequest, f *fixture) {
	t.Helper()
	msg := err.Error()
	if r.Password != "" && strings.Contains(msg, r.Password) {
		t.Errorf("%s: error contains the password: %s", name, msg)
	}
	if _, sig, ok := strings.Cut(r.Password, "sig="); ok {
		sig, _, _ = strings.Cut(sig, "&")
		plain, _ := url.QueryUnescape(sig)
		if strings.Contains(msg, sig) || strings.Contains(msg, plain) {
			t.Errorf("%s: error contains the signature: %s", name, msg)
		}
	}
	for _, k := range f.keys {
		for _, key := range k {
			if strings.Contains(msg, base64.StdEncoding.EncodeToString(key)) {
				t.Errorf("%s: error contains a key: %s", name, msg)
			}
		}
	}
}

// Without its own record (never synced), the edge cannot tell its children;
// its modules still connect.
func TestAuthenticateCASigned(t *testing.T) {
	f := newFixture(t)
	ca, issue := newCA(t, "factory CA")
	_, issueOther := newCA(t, "someone else")
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	valid := func(cn string) *x509.Certificate { return issue(cn, now.Add(-time.Hour), now.Add(time.Hour)) }
	for _, c := range []struct {
		name string
		cert *x509.Certificate
		want string // "" accepted, else part of the error
	}{
		{"chains to the CA, CN = device id", valid("xca"), ""},
		{"CN of another device", valid("sensor1"), "subject CN"},
		{"signed by an untrusted CA", issueOther("xca", now.Add(-time.Hour), now.Add(time.Hour)), "unknown authority"},
		{"expired", issue("xca", now.Add(-2*time.Hour), now.Add(-time.Hour)), "expired"},
		{"self-signed with the right CN", newCert(t, "xca", now.Add(-time.Hour), now.Add(time.Hour)), "unknown authority"},
	} {
		r := req("xca", hub+"/xca"+user, "", c.cert)
		r.Roots = roots
		_, err := f.c.Authenticate(r)
		if l, lerr := f.c.Login(r); c.want == "" && lerr == nil && !l.Expires.Equal(earliest(c.cert, ca)) {
			t.Errorf("%s: session expires %v, want the chain's first NotAfter %v", c.name, l.Expires, earliest(c.cert, ca))
		}
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.want != "" && (!errors.Is(err, ErrBadCredentials) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: err %v, want ErrBadCredentials with %q", c.name, err, c.want)
		}
	}
}

// earliest is the first NotAfter among certs.
func earliest(certs ...*x509.Certificate) time.Time {
	end := certs[0].NotAfter
	for _, c := range certs[1:] {
		if c.NotAfter.Before(end) {
			end = c.NotAfter
		}
	}
	return end
}

func TestAuthenticateBeforeFirstSync(t *testing.T) {
	c := openCache(t, openDB(t, ""))
	key := sas.GenerateKey()
	ids := []Identity{
		{DeviceID: "sensor1", Status: Enabled, ParentScopes: []string{edgeScope}, Auth: Auth{Type: AuthSAS, PrimaryKey: key}},
		{DeviceID: "gw1", ModuleID: "m", Status: Enabled, Auth: Auth{Type: AuthSAS, PrimaryKey: key}},
	}
	if err := c.Put(context.Background(), ids...); err != nil {
		t.Fatal(err)
	}
	exp := now.Add(time.Hour)
	_, err := c.Authenticate(req("sensor1", hub+"/sensor1"+user, sas.NewToken(hub+"/devices/sensor1", key, "", exp)))
	if !errors.Is(err, ErrNotChild) || !strings.Contains(err.Error(), "first sync") {
		t.Errorf("child before the edge's record: %v", err)
	}
	if _, err := c.Authenticate(req("gw1/m", hub+"/gw1/m"+user, sas.NewToken(hub+"/devices/gw1/modules/m", key, "", exp))); err != nil {
		t.Errorf("module before the edge's record: %v", err)
	}
	r := req("gw1/m", hub+"/gw1/m"+user, sas.NewToken(hub+"/devices/gw1/modules/m", key, "", exp))
	r.HostNames = nil
	if _, err := c.Authenticate(r); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("no host names: %v", err)
	}
}

func TestAuthenticateDefaultNow(t *testing.T) {
	f := newFixture(t)
	r := req("sensor1", hub+"/sensor1"+user, f.token("sensor1", hub, false, time.Now().Add(time.Minute)))
	r.Now = time.Time{}
	if _, err := f.c.Authenticate(r); err != nil {
		t.Errorf("zero Now: %v", err)
	}
}

func TestParseUsername(t *testing.T) {
	tests := []struct{ in, d, m string }{
		{"h/d/?api-version=1", "d", ""},
		{"h/d/m/?api-version=1", "d", "m"},
		{"h/d/?DeviceClientType=x&api-version=1", "d", ""},
		{"h/d/?api%2Dversion=1", "d", ""},
		{"h/d/api-version=1", "d", ""},
		{"h/d/m/api-version=1&x=y", "d", "m"},
		{"h/d/?api-version=", "d", ""}, // the value is not checked
	}
	for _, tt := range tests {
		d, m, err := parseUsername(tt.in)
		if err != nil || d != tt.d || m != tt.m {
			t.Errorf("parseUsername(%q) = %q, %q, %v", tt.in, d, m, err)
		}
	}
	for _, in := range []string{"", "h", "h/d", "h/d/", "h/d/m/x/?api-version=1", "h/d/?x=1", "/d/?api-version=1"} {
		if _, _, err := parseUsername(in); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("parseUsername(%q): %v", in, err)
		}
	}
}
