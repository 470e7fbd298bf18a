package broker

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/crypto/bcrypt"

	"github.com/outpost-edge/outpost/store/identity"
)

// How CONNECT is decided. A user name of the IoT Hub form
// "<host>/<client id>[/…]" is an IoT Hub identity's (Options.Auth: SAS
// token or X.509); anything else is a generic client, checked against the
// local accounts (accounts.go). Every refusal gets a CONNACK with its
// reason (MQTT 5 reason code, or the 3.1.1 return code closest to it), a
// count under its AuthReason and a log line (at most one per reason every
// 10 s, with the number held back).

// AuthReason says why a CONNECT was refused.
type AuthReason uint8

// Reasons for refusing a CONNECT.
const (
	AuthBadCredentials AuthReason = iota // unknown identity or account, wrong key, token, password or certificate
	AuthNotAuthorized                    // no credentials and anonymous is off, or anonymous from a non-loopback address
	AuthClientID                         // client id outside the account's clientIds, or one an IoT Hub identity owns
	AuthRateLimited                      // too many failed passwords from this address: refused unchecked for a while
	AuthBusy                             // password checks are saturated
	NumAuthReasons
)

var authReasonNames = [NumAuthReasons]string{"bad_credentials", "not_authorized", "client_id", "rate_limited", "busy"}

// String is the reason's name in status, metrics and logs.
func (r AuthReason) String() string {
	if r < NumAuthReasons {
		return authReasonNames[r]
	}
	return "unknown"
}

var authCodes = [NumAuthReasons]packets.Code{
	packets.ErrBadUsernameOrPassword, packets.ErrNotAuthorized, packets.ErrClientIdentifierNotValid,
	packets.ErrConnectionRateExceeded, packets.ErrServerBusy,
}

// v3 return codes (MQTT 3.1.1 §3.2.2.3) of the reasons.
var authCodesV3 = [NumAuthReasons]byte{4, 5, 2, 3, 3}

type authError struct {
	reason AuthReason
	err    error
	// iot: an IoT Hub identity's credentials were refused; MQTT 3.1.1
	// clients get return code 5 (not authorized), as from IoT Hub.
	iot bool
}

func (e *authError) Error() string { return e.err.Error() }
func (e *authError) Unwrap() error { return e.err }

func refuseAuth(r AuthReason, format string, a ...any) error {
	return &authError{reason: r, err: fmt.Errorf(format, a...)}
}

// identityKnower is implemented by Authenticators that can tell whether an
// IoT Hub identity exists (CacheAuth): a generic client may not take its
// client id, or mochi's session takeover would hand it the identity's
// session.
type identityKnower interface{ Known(id string) bool }

// login decides a CONNECT.
func (b *Broker) login(cl *mqtt.Client, pk packets.Packet) (Login, error) {
	cred := Credentials{ClientID: cl.ID, Username: string(pk.Connect.Username), Password: pk.Connect.Password}
	if st := tlsState(cl.Net.Conn); st != nil {
		cred.Certificates = st.PeerCertificates
	}
	if iotUsername(cred.Username, cl.ID) || certOnlyIoT(b.accounts.Load(), cred) {
		l, err := b.opts.Auth.Authenticate(cred)
		if err == nil && l.ID != cl.ID {
			return Login{}, refuseAuth(AuthClientID, "%v", errClientID)
		}
		if err != nil {
			return Login{}, &authError{reason: AuthBadCredentials, err: err, iot: true}
		}
		return l, nil
	}
	acct, err := b.account(cl, cred)
	if err != nil {
		return Login{}, err
	}
	if err := b.genericClientID(acct, cl.ID); err != nil {
		return Login{}, err
	}
	l := Login{ID: cl.ID, Account: acct.Name, Basis: acct}
	if len(cred.Certificates) > 0 && len(cred.Password) == 0 && acct.CertThumbprint != "" {
		l.Expires = cred.Certificates[0].NotAfter // the session ends with its certificate
	}
	return l, nil
}

// certOnlyIoT tells a CONNECT with a TLS client certificate and no user
// name that no account's certThumbprint matches: an IoT Hub identity's
// (X.509), as before accounts existed.
func certOnlyIoT(a *Accounts, c Credentials) bool {
	if c.Username != "" || len(c.Certificates) == 0 {
		return false
	}
	_, acct := a.ByThumbprint(identity.Thumbprints(c.Certificates[0].Raw)...)
	return !acct
}

// iotUsername tells the IoT Hub user name form "<host>/<client id>[/…]".
func iotUsername(user, clientID string) bool {
	_, rest, ok := strings.Cut(user, "/")
	return ok && clientID != "" && (rest == clientID || strings.HasPrefix(rest, clientID+"/"))
}

// account finds and checks the account a generic client claims.
func (b *Broker) account(cl *mqtt.Client, c Credentials) (*Account, error) {
	accts := b.accounts.Load()
	switch {
	case c.Username == "" && len(c.Password) == 0 && len(c.Certificates) == 0:
		if !accts.Anonymous() {
			return nil, refuseAuth(AuthNotAuthorized, "no credentials, and anonymous clients are off (mqttBroker.anonymous)")
		}
		if !loopback(cl.Net.Remote) {
			return nil, refuseAuth(AuthNotAuthorized, "no credentials: anonymous clients are admitted from loopback only, not from %s", cl.Net.Remote)
		}
		return &Account{Name: AnonymousAccount}, nil
	case c.Username == "" && len(c.Certificates) > 0:
		acct, ok := accts.ByThumbprint(identity.Thumbprints(c.Certificates[0].Raw)...)
		if !ok {
			return nil, refuseAuth(AuthBadCredentials, "the client certificate's thumbprint is no account's certThumbprint")
		}
		return acct, b.certValid(c)
	}
	acct, ok := accts.Named(c.Username)
	if !ok {
		// The same answer, time and failure count as a wrong password: no
		// account names to learn by asking.
		if err := b.pw.check(unknownAccount(), c.Password, remoteIP(addrOf(cl.Net.Remote))); reasonIs(err, AuthRateLimited, AuthBusy) {
			return nil, err
		}
		return nil, refuseAuth(AuthBadCredentials, "no account %q (mqttBroker.accounts)", c.Username)
	}
	if len(c.Password) == 0 && len(c.Certificates) > 0 && acct.CertThumbprint != "" {
		if other, ok := accts.ByThumbprint(identity.Thumbprints(c.Certificates[0].Raw)...); !ok || other != acct {
			return nil, refuseAuth(AuthBadCredentials, "the client certificate is not account %q's (certThumbprint)", acct.Name)
		}
		return acct, b.certValid(c)
	}
	return acct, b.pw.check(acct, c.Password, remoteIP(addrOf(cl.Net.Remote)))
}

// unknownAccount stands for a user name no account has: its hash matches
// no password, and checking it costs what checking a real one does.
var unknownAccount = sync.OnceValue(func() *Account {
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	h, _ := bcrypt.GenerateFromPassword(secret, bcrypt.DefaultCost)
	return &Account{Name: "\x00unknown", PasswordHash: h}
})

func reasonIs(err error, rs ...AuthReason) bool {
	if err == nil {
		return false
	}
	r, _ := reasonOf(err)
	for _, x := range rs {
		if r == x {
			return true
		}
	}
	return false
}

// certValid checks the validity period of a client certificate matched by
// thumbprint (self-signed, as IoT Hub's selfSigned identities).
func (b *Broker) certValid(c Credentials) error {
	leaf, now := c.Certificates[0], b.opts.Now()
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return refuseAuth(AuthBadCredentials, "the client certificate is valid from %s to %s, not now", leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// genericClientID checks the client id a generic client uses.
func (b *Broker) genericClientID(acct *Account, id string) error {
	if !acct.AllowsClientID(id) {
		return refuseAuth(AuthClientID, "client id %q is outside account %q's clientIds %q", id, acct.Name, acct.ClientIDs)
	}
	if id == b.opts.EdgeID || strings.HasPrefix(id, b.opts.EdgeID+"/") {
		return refuseAuth(AuthClientID, "client id %q is this edge's or one of its modules'", id)
	}
	if owner, generic := b.principal(id); generic && owner != acct.Name {
		// mochi would hand this client the other account's session, its
		// subscriptions and the messages queued for it.
		return refuseAuth(AuthClientID, "client id %q holds a session of another account; choose another", id)
	}
	if k, ok := b.opts.Auth.(identityKnower); ok && k.Known(id) {
		return refuseAuth(AuthClientID, "client id %q belongs to an IoT Hub identity; choose another", id)
	}
	return nil
}

// loopback tells 127.0.0.0/8 and ::1 (IPv4-mapped included).
func loopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

type strAddr string

func (a strAddr) Network() string { return "tcp" }
func (a strAddr) String() string  { return string(a) }

func addrOf(s string) net.Addr { return strAddr(s) }

// connack refuses a CONNECT with the reason's code, in the client's
// protocol version.
func (b *Broker) connack(cl *mqtt.Client, err error) error {
	r, iot := reasonOf(err)
	code := authCodes[r]
	if cl.Properties.ProtocolVersion < 5 {
		v3 := authCodesV3[r]
		if iot {
			v3 = 5 // not authorized: what IoT Hub answers, and the Azure SDKs expect
		}
		code = packets.Code{Code: v3, Reason: code.Reason}
	}
	return b.srv.SendConnack(cl, code, false, nil)
}

// reasonOf is the AuthReason of a refused login, and whether it was an
// IoT Hub identity's.
func reasonOf(err error) (AuthReason, bool) {
	var ae *authError
	if errors.As(err, &ae) {
		return ae.reason, ae.iot
	}
	return AuthBadCredentials, false
}

// authRefused counts and logs a refused CONNECT.
func (b *Broker) authRefused(cl *mqtt.Client, user string, err error) AuthReason {
	r, _ := reasonOf(err)
	b.stats.AuthFailed.Add(1)
	b.stats.AuthRefusedBy[r].Add(1)
	// A device retrying with a stale key reconnects in a loop.
	if ok, n := b.gate.rl.Allow("auth/" + r.String()); ok {
		b.log.Warn("connection refused", "reason", r.String(), "client_id", cl.ID, "user", user, "remote", cl.Net.Remote,
			"err", err, "refused_since_last_logged", n)
	}
	return r
}

// Password checks. bcrypt costs tens of milliseconds of CPU by design, so
// a flood of CONNECTs with passwords could starve the broker: checks run
// at most maxHashChecks at a time (a CONNECT waits up to 5 s for a
// slot, then is refused busy); a success is remembered for okTTL (a keyed
// hash of account, password and password hash, never the password), so a
// fleet reconnecting after an outage costs one bcrypt per device; after
// failLimit failures from one address in failWindow, that address is
// refused unchecked until the window ends. Both maps are bounded.
const (
	okTTL      = 5 * time.Minute
	okMax      = 4096
	failLimit  = 10
	failWindow = time.Minute
	failMax    = 4096
)

type pwChecks struct {
	slots chan struct{}
	wait  time.Duration // for a free slot; then the CONNECT is refused busy
	key   [32]byte
	now   func() time.Time

	mu    sync.Mutex
	ok    map[[32]byte]time.Time // keyed hash → valid until
	fails map[string]*failures   // by remote IP
}

type failures struct {
	n     int
	until time.Time
}

func newPwChecks(slots int) *pwChecks {
	p := &pwChecks{slots: make(chan struct{}, max(slots, 1)), wait: 5 * time.Second, now: time.Now, ok: map[[32]byte]time.Time{}, fails: map[string]*failures{}}
	_, _ = rand.Read(p.key[:])
	return p
}

func (p *pwChecks) check(acct *Account, pw []byte, ip string) error {
	if acct.PasswordHash == nil {
		return refuseAuth(AuthBadCredentials, "account %q logs in with a client certificate only (it has no passwordHash)", acct.Name)
	}
	k := p.cacheKey(acct, pw)
	now := p.now()
	p.mu.Lock()
	if until, ok := p.ok[k]; ok && now.Before(until) {
		p.mu.Unlock()
		return nil
	}
	if f := p.fails[ip]; f != nil && f.n >= failLimit && now.Before(f.until) {
		p.mu.Unlock()
		return refuseAuth(AuthRateLimited, "%d failed logins from %s in the last %s: refused unchecked until %s", f.n, ip, failWindow, f.until.UTC().Format(time.RFC3339))
	}
	p.mu.Unlock()
	if err := p.bcrypt(acct, pw); err != nil {
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			p.failed(ip, now)
			return refuseAuth(AuthBadCredentials, "wrong password for account %q", acct.Name)
		}
		return err
	}
	p.succeeded(k, now)
	return nil
}

func (p *pwChecks) bcrypt(acct *Account, pw []byte) error {
	t := time.NewTimer(p.wait)
	defer t.Stop()
	select {
	case p.slots <- struct{}{}:
	case <-t.C:
		return refuseAuth(AuthBusy, "password checks are saturated (%d at a time); retry later", cap(p.slots))
	}
	defer func() { <-p.slots }()
	return bcrypt.CompareHashAndPassword(acct.PasswordHash, pw)
}

func (p *pwChecks) cacheKey(acct *Account, pw []byte) [32]byte {
	m := hmac.New(sha256.New, p.key[:])
	m.Write([]byte(acct.Name))
	m.Write([]byte{0})
	m.Write(acct.PasswordHash)
	m.Write([]byte{0})
	m.Write(pw)
	var k [32]byte
	m.Sum(k[:0])
	return k
}

func (p *pwChecks) succeeded(k [32]byte, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ok) >= okMax {
		for k, until := range p.ok {
			if !now.Before(until) {
				delete(p.ok, k)
			}
		}
		if len(p.ok) >= okMax {
			clear(p.ok) // all fresh: forget them, each costs one bcrypt again
		}
	}
	p.ok[k] = now.Add(okTTL)
}

func (p *pwChecks) failed(ip string, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.fails[ip]
	if f == nil || !now.Before(f.until) {
		if f == nil && len(p.fails) >= failMax {
			for k, v := range p.fails {
				if !now.Before(v.until) {
					delete(p.fails, k)
				}
			}
			if len(p.fails) >= failMax {
				return // bounded: an address not yet seen is not tracked
			}
		}
		f = &failures{until: now.Add(failWindow)}
		p.fails[ip] = f
	}
	f.n++
}
