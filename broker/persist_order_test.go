package broker

import (
	"fmt"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// holdResend is a test hook that holds mochi's resend of the messages of
// the sessions named in ids (the PUBLISHes it writes with DUP right after
// the CONNACK of a returning client) until release is closed.
type holdResend struct {
	mqtt.HookBase
	ids     map[string]bool
	release chan struct{}
}

func (h *holdResend) ID() string           { return "test-hold-resend" }
func (h *holdResend) Provides(b byte) bool { return b == mqtt.OnQosPublish }

func (h *holdResend) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	if h.ids[cl.ID] && pk.FixedHeader.Dup {
		select {
		case <-h.release:
		case <-time.After(5 * time.Second):
		}
	}
}

// mochi v2.7.9 resends a returning session's messages after the CONNACK,
// from the connection's read goroutine, while new messages go through its
// write loop: a message published as soon as the client is connected may
// reach it before the resent ones (which mochi also orders only by the
// second they were first sent in). When the new message enters the
// client's inflight map before the resend lists it, it goes out twice,
// the second time with DUP, which QoS 1 allows. Nothing is lost: the
// messages stored for an offline session all arrive after a restart,
// whatever the order; this test forces the new message first, as a loaded
// machine does now and then (TestPersistSessionsAcrossRestart failed about
// once in 40 runs under load when it took the new message for the last).
func TestPersistResendOvertaken(t *testing.T) {
	e := queuedForOfflineSessions(t)
	hold := &holdResend{ids: map[string]bool{"sub3": true, "sub5": true}, release: make(chan struct{})}
	if err := e.b.srv.AddHook(hold, nil); err != nil {
		t.Fatal(err)
	}
	in3, in5 := newInbox(), newInbox()
	v3(t, e.addr, "sub3", false, in3)
	v5(t, e.addr, "sub5", 3600, nil, in5)
	pub := v3(t, e.addr, "pub", true, nil)
	publish3(t, pub, "test/q", "4", false)
	ins := map[string]*inbox{"3.1.1": in3, "5": in5}
	for name, in := range ins {
		if got := in.until(t, "test/q=4"); len(got) != 1 {
			t.Fatalf("MQTT %s subscriber got %q while its resend was held, want the new message only", name, got)
		}
	}
	close(hold.release)
	want := []string{"test/q=1", "test/q=2", "test/q=3", "test/q=4"}
	for name, in := range ins {
		if got := in.all(t, want...); fmt.Sprint(distinct(got)) != fmt.Sprint(want) {
			t.Errorf("MQTT %s subscriber got %q after the restart, want %q", name, got, want)
		}
	}
	waitFor(t, "acknowledged messages deleted", func() bool { return len(e.state().Inflight) == 0 })
}
