package broker

import (
	"errors"
	"fmt"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// A session ends with its credentials, as IoT Hub disconnects a device
// whose identity is deleted or disabled, whose keys, thumbprints or
// authentication type change, or whose SAS token expires: the broker
// keeps the Login of every session, rechecks it when the identity
// changes (IdentitiesChanged) and ends it at its expiry (a timer on
// Options.Now's clock). Each ended session is counted and logged, with
// its reason, at most once per reason every 10 s.

// Why a live session was ended.
const (
	endRevoked = "revoked" // the identity was deleted, disabled or its credentials changed
	endExpired = "expired" // its SAS token (after the allowed skew) or client certificate expired
	endHub     = "hub"     // the link asked (Disconnect)
)

// maxExpiryWait bounds one wait of the expiry timer, so that the session
// ends on time even when the clock estimate moves (Options.Now is the
// edge's estimate of the time of day, not a monotonic clock).
const maxExpiryWait = 30 * time.Second

// pend keeps the Login of an authenticated client until its session is
// established. Clients that closed in between (their CONNACK failed) are
// swept once the map has doubled since the last sweep: the map stays
// within twice the connections in the middle of CONNECT, and a CONNECT
// costs O(1) amortised instead of a scan of every pending one (a
// reconnect storm after a restart).
func (b *Broker) pend(cl *mqtt.Client, l Login) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.pending) >= b.pendingSweep {
		for c := range b.pending {
			if c.Closed() {
				delete(b.pending, c)
			}
		}
		b.pendingSweep = max(2*len(b.pending), 16)
	}
	b.pending[cl] = l
}

// pendingLogin is the Login OnConnect gave cl, if any.
func (b *Broker) pendingLogin(cl *mqtt.Client) (Login, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l, ok := b.pending[cl]
	return l, ok
}

func (b *Broker) takePending(cl *mqtt.Client) Login {
	b.mu.Lock()
	defer b.mu.Unlock()
	l, ok := b.pending[cl]
	delete(b.pending, cl)
	if !ok {
		l = Login{ID: cl.ID}
	}
	return l
}

// IdentitiesChanged rechecks the live sessions of ids ("d" or "d/m": the
// identities added, changed or removed) and ends those whose credentials
// no longer hold. Sessions of other identities are not touched.
func (b *Broker) IdentitiesChanged(ids []string) {
	for _, id := range ids {
		if s := b.sessionOf(id); s != nil {
			b.recheck(s)
		}
	}
}

func (b *Broker) recheck(s *session) {
	check := b.opts.Auth.Recheck
	if s.login.Account != "" {
		check = b.recheckAccount
	}
	if err := check(s.login); err != nil {
		b.end(s, endRevoked, err)
	}
}

// watchExpiry arms the session's expiry timer, if its credentials expire.
func (s *session) watchExpiry() {
	if s.login.Expires.IsZero() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// stopped: a newer connection of the identity may have taken this one
	// over between its registration and here.
	if s.expiry == nil && !s.stopped && !s.ended.Load() {
		s.expiry = time.AfterFunc(s.untilExpiry(), s.checkExpiry)
	}
}

func (s *session) untilExpiry() time.Duration {
	return min(s.login.Expires.Sub(s.b.opts.Now()), maxExpiryWait)
}

// checkExpiry runs on the timer. A timer that fired as the session
// stopped is neither armed again (it would keep the session in memory and
// wake every maxExpiryWait until the credentials expire, a year for a
// certificate) nor ends a session already gone.
func (s *session) checkExpiry() {
	left := s.untilExpiry()
	s.mu.Lock()
	stopped := s.stopped
	if !stopped && left > 0 {
		s.expiry.Reset(left)
	}
	s.mu.Unlock()
	if !stopped && left <= 0 {
		s.b.end(s, endExpired, fmt.Errorf("its credentials (SAS token with the allowed skew, or client certificate) expired at %s on the edge's clock; reconnect with new ones",
			s.login.Expires.UTC().Format(time.RFC3339)))
	}
}

// end closes a session whose credentials no longer hold, once: counted,
// logged without flooding, and for MQTT 5 clients a DISCONNECT that says
// why (MQTT 3.1.1 has no server DISCONNECT: the connection is closed).
func (b *Broker) end(s *session, why string, err error) {
	if !s.ended.CompareAndSwap(false, true) {
		return
	}
	switch why {
	case endExpired:
		b.stats.SessionsExpired.Add(1)
	default:
		b.stats.SessionsRevoked.Add(1)
	}
	if ok, held := b.endedLog.Allow(why); ok {
		b.log.Warn("session ended: its credentials no longer hold", "reason", why, "client_id", s.id, "err", err,
			"ended_since_last_logged", held)
	}
	// Closing can block on a client that does not read (a DISCONNECT to
	// write, a TLS close_notify), and the caller may be the identity
	// cache's writer (the link's pull): close aside, within disconnectWait.
	cl := s.cl
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		cl.Stop(err) // Close is stopping every client anyway
		return
	}
	b.closing.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.closing.Done()
		t := time.AfterFunc(disconnectWait, func() { cl.Stop(err) })
		defer t.Stop()
		if cl.Properties.ProtocolVersion == 5 {
			_ = b.srv.DisconnectClient(cl, packets.Code{Code: packets.ErrNotAuthorized.Code, Reason: err.Error()})
			return
		}
		cl.Stop(err) // MQTT 3.1.1 has no server DISCONNECT
	}()
}

// disconnectWait bounds the close of a session ended: after it the
// socket is closed whatever is being written.
const disconnectWait = time.Second

// Disconnect closes the connection of an identity, if it has one: the hub
// removed or disabled it. It may connect again only if it authenticates.
func (b *Broker) Disconnect(id, reason string) {
	if s := b.sessionOf(id); s != nil {
		b.end(s, endHub, errors.New(reason))
	}
}
