package broker

import (
	"crypto/x509"
	"errors"
	"time"

	"github.com/outpost-edge/outpost/store/identity"
)

// CacheAuth authenticates clients against an identity cache
// (store/identity), offline: SAS tokens and X.509 client certificates.
type CacheAuth struct {
	IDs    *identity.Cache
	EdgeID string   // the edge whose children and modules may connect
	Hosts  []string // host names a token's resource may name
	Roots  *x509.CertPool
	Now    func() time.Time // tokens expire by it (the edge's time estimate)
}

// Authenticate checks a CONNECT's credentials.
func (a CacheAuth) Authenticate(c Credentials) (Login, error) {
	l, err := a.IDs.Login(identity.AuthRequest{
		ClientID: c.ClientID, Username: c.Username, Password: string(c.Password),
		PeerCertificates: c.Certificates, Roots: a.Roots, EdgeDeviceID: a.EdgeID, HostNames: a.Hosts, Now: a.Now(),
	})
	if err != nil {
		return Login{}, err
	}
	return Login{ID: l.Identity.ID(), Expires: l.Expires, Basis: l}, nil
}

// Recheck ends a session whose identity was deleted or disabled, or whose
// credentials changed since it connected.
func (a CacheAuth) Recheck(l Login) error {
	il, ok := l.Basis.(identity.Login)
	if !ok {
		return errors.New("the session has no record of its credentials")
	}
	return a.IDs.Recheck(il)
}

// Known reports whether an IoT Hub identity exists in the cache: a generic
// client may not use its id as client id. An id that no IoT Hub identity
// can have (a space, more than one '/': identity.ErrInvalid) is free, as the
// Paho suite's "clean retained".
func (a CacheAuth) Known(id string) bool {
	_, ok, err := a.IDs.Get(id)
	return ok || err != nil && !errors.Is(err, identity.ErrInvalid) // unsure: keep the id for the identity
}
