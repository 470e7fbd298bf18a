package brokertest_test

import (
	"context"
	"encoding/base64"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/broker/brokertest"
	"github.com/outpost-edge/outpost/broker/client"
	"github.com/outpost-edge/outpost/store/identity"
)

// The harness works end to end: identities (the edge's added), SAS
// connections, routes, desired properties from the hub, reported ones
// and queues.
func TestHarness(t *testing.T) {
	h := brokertest.New(t, brokertest.Options{
		Routes:     `{"routes":{"up":"FROM /messages/* INTO $upstream"}}`,
		Identities: []string{brokertest.EdgeID + "/m", "leaf"},
	})
	for id, want := range map[string]func(identity.Identity) bool{
		brokertest.EdgeID:        func(i identity.Identity) bool { return i.Edge && i.DeviceScope == brokertest.Scope },
		brokertest.EdgeID + "/m": func(i identity.Identity) bool { return !i.Edge && i.ModuleID == "m" },
		"leaf": func(i identity.Identity) bool {
			return len(i.ParentScopes) == 1 && i.ParentScopes[0] == brokertest.Scope
		},
	} {
		idn, ok, err := h.Identities.Get(id)
		if err != nil || !ok || !want(idn) || len(h.Keys[id]) != 32 {
			t.Errorf("identity %s: %+v %v %v, key %x", id, idn, ok, err, h.Keys[id])
		}
	}

	ctx, cancel := context.WithTimeout(h.Context(), 10*time.Second)
	defer cancel()
	desired := make(chan map[string]any, 4)
	c := h.Client(brokertest.EdgeID + "/m")
	c.OnDesired(func(d map[string]any, _ int64) { desired <- d })
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	<-desired // the full twin read on connecting
	h.PatchDesired(brokertest.EdgeID+"/m", `{"x":1}`)
	select {
	case d := <-desired:
		if d["x"] != 1.0 {
			t.Errorf("desired %v", d)
		}
	case <-time.After(brokertest.Timeout):
		t.Fatal("no desired change")
	}
	if _, err := c.PatchReported(ctx, map[string]any{"y": "z"}); err != nil {
		t.Fatal(err)
	}
	brokertest.Eventually(t, "the reported property", func() bool { return h.Reported(brokertest.EdgeID + "/m")["y"] == "z" })
	if err := c.SendEvent(ctx, client.Message{Body: []byte("hi"), MessageID: "m1"}); err != nil {
		t.Fatal(err)
	}
	if msgs := h.Messages("$upstream"); len(msgs) != 1 || msgs[0].ID != "m1" || string(msgs[0].Body) != "hi" {
		t.Errorf("$upstream holds %+v", msgs)
	}
	if cs := h.ConnString("leaf", "gw.example"); cs != "HostName=hub.test;DeviceId=leaf;SharedAccessKey="+
		base64.StdEncoding.EncodeToString(h.Keys["leaf"])+";GatewayHostName=gw.example" {
		t.Errorf("ConnString = %q", cs)
	}
	if h.Addr("tcp") == "" || h.Addr("tls") != "" {
		t.Errorf("listeners tcp %q tls %q", h.Addr("tcp"), h.Addr("tls"))
	}
}
