package broker

import (
	"errors"
	"net"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/outpost-edge/outpost/store/queue"
)

// Ending a session never blocks its caller (the identity cache's writer,
// on the link's pull), even for a client that reads nothing: an MQTT 5
// client's DISCONNECT cannot be written to a net.Pipe nobody reads, and
// the connection is closed within disconnectWait anyway.
func TestEndDoesNotBlockOnAClientThatDoesNotRead(t *testing.T) {
	e := newEnv(t, "", queue.Options{})
	for _, version := range []byte{4, 5} {
		server, client := net.Pipe()
		t.Cleanup(func() { server.Close(); client.Close() })
		cl := e.b.srv.NewClient(server, "tcp", "dev1", false)
		cl.Properties.ProtocolVersion = version
		s := &session{b: e.b, cl: cl, id: "dev1", subs: map[string]bool{}}
		returned := make(chan struct{})
		go func() {
			e.b.end(s, endRevoked, errors.New("test"))
			close(returned)
		}()
		select {
		case <-returned:
		case <-time.After(500 * time.Millisecond):
			t.Fatalf("MQTT version %d: end blocked on a client that does not read", version)
		}
		// The connection is closed within disconnectWait although the
		// client never reads the DISCONNECT.
		deadline := time.Now().Add(disconnectWait + 500*time.Millisecond)
		for !cl.Closed() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !cl.Closed() {
			t.Fatalf("MQTT version %d: the connection was not closed within %v", version, disconnectWait)
		}
	}
}

// The Logins of clients whose CONNACK failed (closed before their session
// was established) do not accumulate, and an open client's is kept.
func TestPendingDropsClosedClients(t *testing.T) {
	e := newEnv(t, "", queue.Options{})
	client := func() *mqtt.Client {
		server, peer := net.Pipe()
		t.Cleanup(func() { server.Close(); peer.Close() })
		return e.b.srv.NewClient(server, "tcp", "dev1", false)
	}
	open := client()
	e.b.pend(open, Login{ID: "dev1", Basis: "open"})
	for range 100 {
		cl := client()
		cl.Stop(errors.New("CONNACK failed"))
		e.b.pend(cl, Login{ID: "dev1"})
	}
	e.b.mu.Lock()
	n := len(e.b.pending)
	e.b.mu.Unlock()
	if n > 32 {
		t.Errorf("%d Logins pending after 100 closed clients; want at most 32", n)
	}
	if l := e.b.takePending(open); l.Basis != "open" {
		t.Errorf("the open client's Login was dropped: %+v", l)
	}
}

// An expiry timer that fires as its session stops (taken over, or
// disconnected) is not armed again, and a session stopped before its
// timer was armed gets none: neither keeps waking until the credentials
// expire.
func TestStoppedSessionExpiryNotRearmed(t *testing.T) {
	e := newEnv(t, "", queue.Options{})
	server, client := net.Pipe()
	t.Cleanup(func() { server.Close(); client.Close() })
	cl := e.b.srv.NewClient(server, "tcp", "dev1", false)
	login := Login{ID: "dev1", Expires: e.b.opts.Now().Add(time.Hour)}

	s := &session{b: e.b, cl: cl, id: "dev1", subs: map[string]bool{}, login: login}
	s.acks.init(s)
	s.watchExpiry()
	s.stop()
	s.checkExpiry() // the timer fired just as the session stopped
	if s.expiry.Stop() {
		t.Fatal("the expiry timer of a stopped session was armed again")
	}
	if s.ended.Load() {
		t.Fatal("a stopped session was ended by its expiry timer")
	}

	late := &session{b: e.b, cl: cl, id: "dev1", subs: map[string]bool{}, login: login}
	late.acks.init(late)
	late.stop() // taken over before openSession armed its timer
	late.watchExpiry()
	if late.expiry != nil {
		t.Fatal("an expiry timer was armed for a stopped session")
	}
}
