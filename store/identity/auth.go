package identity

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/store/identity/sas"
)

// AuthRequest is what an MQTT CONNECT presents.
type AuthRequest struct {
	ClientID, Username, Password string
	// PeerCertificates is the TLS client chain, leaf first; the TLS layer
	// has already checked that the client holds the leaf's private key.
	PeerCertificates []*x509.Certificate
	// Roots are the CA certificates that certificateAuthority identities'
	// client certificates must chain to (IoT Hub's verified CAs); nil
	// refuses them.
	Roots        *x509.CertPool
	EdgeDeviceID string   // this edge
	HostNames    []string // names a token's resource may carry: this edge's hostname(s) and the hub HostName
	Now          time.Time
}

// Authenticate applies the IoT Hub / IoT Edge CONNECT rules and returns the
// identity that connected:
//
//   - ClientID is "d" or "d/m" and the username's ids equal it exactly.
//   - The username is `<host>/<d>[/<m>]/?api-version=…[&…]` (also without the
//     '?', as edgeHub accepts); like edgeHub we ignore its host segment and
//     the api-version value, and require the key.
//   - A non-empty Password is a SAS token for `<host>/devices/<d>[/modules/<m>]`
//     where host is one of HostNames, signed with the primary or secondary
//     key; else a client certificate whose SHA-1 or SHA-256 thumbprint is the
//     primary or secondary one (selfSigned; devices only, as in edgeHub).
//   - Credentials are checked before status and scope, so a client that
//     cannot prove who it is learns no more than that the id exists.
//   - The identity is enabled, and is this edge, one of its modules, or a
//     device whose parent scope is this edge's device scope.
func (c *Cache) Authenticate(req AuthRequest) (Identity, error) {
	id, _, err := c.authenticate(req)
	return id, err
}

// authenticate is Authenticate that also returns when the credentials
// expire: a SAS token's expiry plus the allowed skew, or the client
// certificate's NotAfter (the earliest of its verified chain, for a
// CA-signed one).
func (c *Cache) authenticate(req AuthRequest) (Identity, time.Time, error) {
	if req.Now.IsZero() {
		req.Now = time.Now()
	}
	d, m, err := checkClient(req.ClientID, req.Username)
	if err != nil {
		return Identity{}, time.Time{}, err
	}
	c.mu.RLock()
	id, ok := c.ids[req.ClientID]
	edge, edgeOK := c.ids[req.EdgeDeviceID]
	c.mu.RUnlock()
	if !ok {
		create := fmt.Sprintf("outpost device create %s --parent %s", d, req.EdgeDeviceID)
		if m != "" {
			create = fmt.Sprintf("outpost module create %s %s", d, m)
		}
		return Identity{}, time.Time{}, fmt.Errorf("%w: %q is not in this edge's identity cache; create it on the hub (%s) and let the edge sync", ErrUnknownIdentity, req.ClientID, create)
	}
	var expires time.Time
	if req.Password != "" {
		expires, err = checkSAS(id, req)
	} else {
		expires, err = checkCert(id, req)
	}
	if err != nil {
		return Identity{}, time.Time{}, err
	}
	if id.Status != Enabled {
		return Identity{}, time.Time{}, fmt.Errorf("%w: %q is %s on the hub; enable it there", ErrDisabled, req.ClientID, id.Status)
	}
	if err := checkScope(id, d, m, req.EdgeDeviceID, edge, edgeOK); err != nil {
		return Identity{}, time.Time{}, err
	}
	return id.clone(), expires, nil
}

// checkClient validates the client id and that the username names it.
func checkClient(clientID, username string) (d, m string, err error) {
	d, m, err = SplitID(clientID)
	if err != nil {
		return "", "", fmt.Errorf("%w: client id %q is not <device> or <device>/<module>", ErrClientIDMismatch, short(clientID))
	}
	ud, um, err := parseUsername(username)
	if err != nil {
		return "", "", err
	}
	if ud != d || um != m {
		return "", "", fmt.Errorf("%w: client id %q but username names %q; both must be the same device (or device/module) id, case included", ErrClientIDMismatch, short(clientID), short(Identity{DeviceID: ud, ModuleID: um}.ID()))
	}
	return d, m, nil
}

// parseUsername follows edgeHub's MqttUsernameParser: `host/d/?query`,
// `host/d/m/?query`, or the same without '?' when the segment after the ids
// starts with "api-version=" (a legacy DeviceClientType may hold '/').
func parseUsername(u string) (d, m string, err error) {
	bad := func(why string) error {
		return fmt.Errorf("%w: username %q %s; want <host>/<device>[/<module>]/?api-version=…", ErrBadCredentials, short(u), why)
	}
	segs := strings.Split(u, "/")
	if len(segs) < 3 {
		return "", "", bad("has too few '/'-separated parts")
	}
	var query string
	switch {
	case strings.HasPrefix(segs[2], "?") || strings.HasPrefix(segs[2], "api-version="):
		d, query = segs[1], strings.Join(segs[2:], "/")
	case len(segs) >= 4 && (strings.HasPrefix(segs[3], "?") || strings.HasPrefix(segs[3], "api-version=")):
		d, m, query = segs[1], segs[2], strings.Join(segs[3:], "/")
	default:
		return "", "", bad("has no ?api-version=… after the ids")
	}
	if segs[0] == "" {
		return "", "", bad("has no host")
	}
	if !hasAPIVersion(strings.TrimPrefix(query, "?")) {
		return "", "", bad("has no api-version")
	}
	return d, m, nil
}

func hasAPIVersion(query string) bool {
	for kv := range strings.SplitSeq(query, "&") {
		k, _, _ := strings.Cut(kv, "=")
		if k, err := url.QueryUnescape(k); err == nil && k == "api-version" {
			return true
		}
	}
	return false
}

// checkSAS verifies the token in req's password and returns when it
// stops being valid (its expiry plus the allowed skew).
func checkSAS(id Identity, req AuthRequest) (time.Time, error) {
	if id.Auth.Type != AuthSAS {
		return time.Time{}, fmt.Errorf("%w: %q uses %s (X.509) authentication; connect with its client certificate and an empty password", ErrBadCredentials, id.ID(), id.Auth.Type)
	}
	tok, err := sas.ParseToken(req.Password)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: password: %w", ErrBadCredentials, err)
	}
	if len(req.HostNames) == 0 {
		return time.Time{}, fmt.Errorf("%w: this edge has no host names configured to accept SAS tokens for", ErrBadCredentials)
	}
	host, _, _ := strings.Cut(tok.Resource, "/")
	accepted, ok := acceptHost(host, req.HostNames)
	if !ok {
		return time.Time{}, fmt.Errorf("%w: %w: token resource host %q is neither the hub nor this edge (%s); sign it for HostName from the connection string", ErrBadCredentials, sas.ErrWrongResource, short(host), strings.Join(req.HostNames, ", "))
	}
	want := sas.ResourceURI(accepted, id.DeviceID, id.ModuleID)
	keys := [][]byte{id.Auth.PrimaryKey, id.Auth.SecondaryKey}
	if err := sas.Verify(tok, want, keys, req.Now, sas.DefaultSkew); err != nil {
		return time.Time{}, fmt.Errorf("%w: %w", ErrBadCredentials, err)
	}
	return tok.Expiry.Add(sas.DefaultSkew), nil
}

// acceptHost returns the entry of names that host matches: equal ignoring
// case, or equal without the port when only one side has one (a hub
// HostName "hub:8080" and a token for "hub", or the reverse).
func acceptHost(host string, names []string) (string, bool) {
	for _, n := range names {
		if strings.EqualFold(host, n) {
			return n, true
		}
	}
	h, hasPort := splitPort(host)
	for _, n := range names {
		nh, nPort := splitPort(n)
		if hasPort != nPort && h != "" && strings.EqualFold(h, nh) {
			return host, true
		}
	}
	return "", false
}

func splitPort(hostport string) (string, bool) {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h, true
	}
	return strings.Trim(hostport, "[]"), false
}

// checkCert authenticates by the TLS client certificate; the session it
// opens ends when the certificate (the earliest of its verified chain, for
// CA-signed ones) stops being valid.
func checkCert(id Identity, req AuthRequest) (time.Time, error) {
	if len(req.PeerCertificates) == 0 {
		return time.Time{}, fmt.Errorf("%w: no password (SAS token) and no TLS client certificate", ErrBadCredentials)
	}
	switch {
	case id.ModuleID != "":
		return time.Time{}, fmt.Errorf("%w: modules cannot authenticate with X.509 (as in IoT Edge); send a SAS token as password", ErrBadCredentials)
	case id.Auth.Type == AuthSAS:
		return time.Time{}, fmt.Errorf("%w: %q uses SAS authentication; send a SAS token as password", ErrBadCredentials, id.ID())
	case id.Auth.Type == AuthCA:
		return checkChain(id, req)
	}
	leaf := req.PeerCertificates[0]
	if req.Now.Before(leaf.NotBefore) || req.Now.After(leaf.NotAfter) {
		return time.Time{}, fmt.Errorf("%w: client certificate is valid from %s to %s, not now (%s)", ErrBadCredentials,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339), req.Now.UTC().Format(time.RFC3339))
	}
	got := Thumbprints(leaf.Raw)
	for _, want := range []string{id.Auth.PrimaryThumbprint, id.Auth.SecondaryThumbprint} {
		want = normThumbprint(want)
		if want != "" && slices.ContainsFunc(got, func(g string) bool { return subtle.ConstantTimeCompare([]byte(g), []byte(want)) == 1 }) {
			return leaf.NotAfter, nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: client certificate thumbprint (SHA-1 %s) matches neither the primary nor the secondary thumbprint of %q", ErrBadCredentials, got[0], id.ID())
}

// checkChain authenticates a certificateAuthority identity as IoT Hub does:
// the client certificate chains to a trusted CA and its subject common name
// is the device id.
func checkChain(id Identity, req AuthRequest) (time.Time, error) {
	if req.Roots == nil {
		return time.Time{}, fmt.Errorf("%w: %q uses CA-signed X.509 but this edge trusts no CA for client certificates (start it with --client-ca FILE)", ErrBadCredentials, id.ID())
	}
	leaf := req.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range req.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: req.Roots, Intermediates: inter, CurrentTime: req.Now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: client certificate of %q: %v", ErrBadCredentials, id.ID(), err)
	}
	if leaf.Subject.CommonName != id.DeviceID {
		return time.Time{}, fmt.Errorf("%w: client certificate is for %q (subject CN) but the client connects as %q", ErrBadCredentials, short(leaf.Subject.CommonName), id.DeviceID)
	}
	return chainExpiry(chains), nil
}

// chainExpiry is when the first certificate of a verified chain expires
// (the earliest over all chains found, to be safe).
func chainExpiry(chains [][]*x509.Certificate) time.Time {
	var end time.Time
	for _, chain := range chains {
		for _, c := range chain {
			if end.IsZero() || c.NotAfter.Before(end) {
				end = c.NotAfter
			}
		}
	}
	return end
}

func checkScope(id Identity, d, m, edgeID string, edge Identity, edgeOK bool) error {
	switch {
	case m != "":
		if d != edgeID {
			return fmt.Errorf("%w: module %q belongs to device %q, not to this edge %q; modules connect to their own edge", ErrNotChild, id.ID(), d, edgeID)
		}
		return nil
	case d == edgeID:
		return nil
	case !edgeOK || edge.DeviceScope == "":
		return fmt.Errorf("%w: this edge's own identity %q (and so its device scope) is not in the cache yet; it arrives with the first sync with the hub", ErrNotChild, edgeID)
	case !slices.Contains(id.ParentScopes, edge.DeviceScope):
		return fmt.Errorf("%w: device %q is not a child of this edge %q; set its parent on the hub (outpost device create %s --parent %s)", ErrNotChild, d, edgeID, d, edgeID)
	}
	return nil
}

// Thumbprints returns the upper-case hex SHA-1 and SHA-256 thumbprints of
// a DER certificate, as IoT Hub writes them.
func Thumbprints(der []byte) []string {
	s1, s256 := sha1.Sum(der), sha256.Sum256(der)
	return []string{strings.ToUpper(hex.EncodeToString(s1[:])), strings.ToUpper(hex.EncodeToString(s256[:]))}
}

// NormalizeThumbprint returns a thumbprint as upper-case hex without ':' or
// spaces, "" when it is not the hex SHA-1 (40 digits) or SHA-256 (64) of a
// certificate.
func NormalizeThumbprint(tp string) string {
	if n := normThumbprint(tp); len(n) == 40 || len(n) == 64 {
		return n
	}
	return ""
}
