package broker

import "testing"

func TestPolicy(t *testing.T) {
	p, err := ParsePolicy([]byte(`{"routes":{},"mqttBroker":{"authorizations":[
	  {"identities":["{{iot:identity}}"],"allow":[{"operations":["mqtt:publish","mqtt:subscribe"],"resources":["shared/{{iot:device_id}}/#","chat/+"]}]},
	  {"identities":["gw1/noisy"],"deny":[{"operations":["mqtt:publish"],"resources":["chat/#"]}]},
	  {"identities":["gw1/reader"],"allow":[{"operations":["mqtt:subscribe"],"resources":["alerts/#"]}]}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		id, topic string
		write     bool
		want      bool
	}{
		{"gw1/a", "shared/gw1/x", true, true},
		{"sensor1", "shared/sensor1/temp", true, true},
		{"sensor1", "shared/gw1/temp", true, false}, // another device's space
		{"gw1/a", "chat/room1", true, true},
		{"gw1/a", "chat/room1/deep", true, false},
		{"gw1/noisy", "chat/room1", true, false}, // deny wins
		{"gw1/noisy", "chat/room1", false, true}, // it may still listen
		{"gw1/reader", "alerts/#", false, true},
		{"gw1/reader", "alerts/fire", true, false},
		{"gw1/a", "alerts/fire", false, false},
		{"gw1/a", "chat/#", false, false}, // chat/+ does not cover chat/#
		{"gw1/a", "chat/+", false, true},
		{"gw1/a", "other", true, false},
	}
	for _, c := range cases {
		if got := p.Allowed(c.id, c.topic, c.write); got != c.want {
			t.Errorf("%s %s write=%v: %v, want %v", c.id, c.topic, c.write, got, c.want)
		}
	}
	var none *Policy
	if none.Allowed("a", "x", true) {
		t.Error("nil policy allows")
	}
	if _, err := ParsePolicy([]byte(`{"mqttBroker":{"authorizations":[{"identities":["a"],"allow":[{"operations":["mqtt:fly"]}]}]}}`)); err == nil {
		t.Error("unknown operation accepted")
	}
}
