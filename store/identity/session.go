package identity

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"time"
)

// Login is what a CONNECT proved: who connected, and what its session
// rests on, so that the session can end with its credentials (as IoT Hub
// disconnects a device whose keys change, or that is disabled or deleted).
type Login struct {
	Identity Identity
	// Credentials fingerprints the identity's credentials at CONNECT
	// (Identity.Credentials); Recheck compares it with the current ones.
	Credentials string
	// Expires is when the credentials stop being valid on the clock of
	// AuthRequest.Now: a SAS token's expiry plus the allowed skew, or a
	// client certificate's NotAfter (for a CA-signed one, the earliest of
	// its verified chain).
	Expires time.Time
}

// Credentials fingerprints what authenticates the identity: its
// generation, authentication type, keys and thumbprints. Any change of
// them changes the fingerprint. It is a hash, never a key.
func (id Identity) Credentials() string {
	h := sha256.New()
	for _, part := range [][]byte{
		[]byte(id.Generation), []byte(id.Auth.Type), id.Auth.PrimaryKey, id.Auth.SecondaryKey,
		[]byte(normThumbprint(id.Auth.PrimaryThumbprint)), []byte(normThumbprint(id.Auth.SecondaryThumbprint)),
	} {
		fmt.Fprintf(h, "%d:", len(part))
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Login authenticates as Authenticate does and says what the session
// rests on.
func (c *Cache) Login(req AuthRequest) (Login, error) {
	id, expires, err := c.authenticate(req)
	if err != nil {
		return Login{}, err
	}
	return Login{Identity: id, Credentials: id.Credentials(), Expires: expires}, nil
}

// Recheck tells whether the session of a Login may go on with the identity
// as the cache now has it: nil, or why it must end — the identity was
// deleted (ErrUnknownIdentity), disabled (ErrDisabled), its credentials
// changed (ErrCredentialsChanged: keys, thumbprints, authentication type,
// or deleted and created again), or its parent did (ErrNotChild).
func (c *Cache) Recheck(l Login) error {
	c.mu.RLock()
	id, ok := c.ids[l.Identity.ID()]
	c.mu.RUnlock()
	switch {
	case !ok:
		return fmt.Errorf("%w: %q was deleted at the hub", ErrUnknownIdentity, l.Identity.ID())
	case id.Status != Enabled:
		return fmt.Errorf("%w: %q was disabled at the hub", ErrDisabled, id.ID())
	case id.Credentials() != l.Credentials:
		return fmt.Errorf("%w: the keys, thumbprints or authentication type of %q changed at the hub (or it was created again); connect with the new credentials", ErrCredentialsChanged, id.ID())
	case !slices.Equal(id.ParentScopes, l.Identity.ParentScopes):
		return fmt.Errorf("%w: the parent of %q changed at the hub; it connects through its new parent", ErrNotChild, id.ID())
	}
	return nil
}

// Watch registers f to learn of every change of the cache: after each
// commit, f gets the ids ("d" or "d/m") added, changed or removed. Calls
// are serialised, in commit order, on the writer's goroutine: f must be
// quick and must not write to the cache.
func (c *Cache) Watch(f func(ids []string)) {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	c.watchers = append(c.watchers, f)
}

func (c *Cache) notify(ids []string) {
	if len(ids) == 0 {
		return
	}
	c.watchMu.Lock()
	ws := c.watchers
	c.watchMu.Unlock()
	for _, f := range ws {
		f(ids)
	}
}
