package broker

import (
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-edge/outpost/store/queue"
)

type aclCase struct {
	id, topic string
	write     bool
	want      bool
}

func checkAllowed(t *testing.T, p *Policy, cases []aclCase) {
	t.Helper()
	for _, c := range cases {
		if got := p.Allowed(c.id, c.topic, c.write); got != c.want {
			t.Errorf("%q %q write=%v: %v, want %v", c.id, c.topic, c.write, got, c.want)
		}
	}
}

func TestPolicy(t *testing.T) {
	p, err := ParsePolicy([]byte(`{"routes":{},"mqttBroker":{"authorizations":[
	  {"identities":["{{iot:identity}}"],"allow":[{"operations":["mqtt:publish","mqtt:subscribe"],"resources":["shared/{{iot:device_id}}/#","chat/+"]}]},
	  {"identities":["gw1/noisy"],"deny":[{"operations":["mqtt:publish"],"resources":["chat/#"]}]},
	  {"identities":["gw1/reader"],"allow":[{"operations":["mqtt:subscribe"],"resources":["alerts/#"]}]}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	checkAllowed(t, p, []aclCase{
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
	})
	var none *Policy
	if none.Allowed("a", "x", true) {
		t.Error("nil policy allows")
	}
	if _, err := ParsePolicy([]byte(`{"mqttBroker":{"authorizations":[{"identities":["a"],"allow":[{"operations":["mqtt:fly"]}]}]}}`)); err == nil {
		t.Error("unknown operation accepted")
	}
}

// TestPolicyPlaceholdersCannotWiden: ids that bypassed validation (a
// device named "+", "#", "a/b", "") are not granted other identities'
// topics through a placeholder, and normal ids keep their grants.
func TestPolicyPlaceholdersCannotWiden(t *testing.T) {
	p, err := ParsePolicy([]byte(`{"mqttBroker":{"authorizations":[
	  {"identities":["{{iot:identity}}"],"allow":[{"operations":["mqtt:publish","mqtt:subscribe"],"resources":[
	    "shared/{{iot:device_id}}/#","mod/{{iot:module_id}}/x","who/{{iot:identity}}/y","fixed/topic"]}]}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	checkAllowed(t, p, []aclCase{
		// Normal ids keep their grants.
		{"sensor1", "shared/sensor1/temp", true, true},
		{"sensor1", "shared/sensor1/#", false, true},
		{"gw1/filter", "mod/filter/x", true, true},
		{"gw1/filter", "who/gw1/filter/y", false, true},
		{"sensor1", "who/sensor1/y", true, true},
		{"sensor1", "fixed/topic", true, true}, // no placeholder: unaffected
		{"+", "fixed/topic", true, true},
		// Wildcards in the id would match every device's topics.
		{"+", "shared/sensor1/temp", true, false},
		{"+", "shared/sensor1/temp", false, false},
		{"+", "shared/+/temp", false, false},
		{"#", "shared/sensor1/temp", false, false},
		{"#", "shared/#", false, false},
		{"gw1/+", "mod/filter/x", false, false},
		{"gw1/#", "mod/filter/x", false, false},
		{"gw1/#", "who/gw1/filter/y", false, false},
		{"+/+", "who/gw1/filter/y", false, false},
		// A '/' in an id moves the grant to another level.
		{"gw1/a/b", "mod/a/b/x", true, false},
		{"gw1/a/b", "who/gw1/a/b/y", true, false},
		{"a\x00b", "shared/a\x00b/t", true, false},
		// A module placeholder for a device client is empty: "mod//x".
		{"sensor1", "mod//x", true, false},
		{"gw1/", "mod//x", true, false},
		{"gw1/", "who/gw1//y", true, false},
		{"", "shared//t", true, false},
	})
}

// TestACLWildcardIDs: the IoT Hub topic ACL grants an id that bypassed
// validation none of its (wildcard) topics, and normal ids keep theirs.
func TestACLWildcardIDs(t *testing.T) {
	for _, c := range []struct {
		id, topic string
		write     bool
		want      bool
	}{
		{"sensor1", "devices/sensor1/messages/devicebound/#", false, true},
		{"sensor1", "devices/sensor1/messages/events/", true, true},
		{"gw1/filter", "devices/gw1/modules/filter/#", false, true},
		{"+", "devices/+/messages/devicebound/#", false, false},
		{"#", "devices/#/messages/devicebound/#", false, false},
		{"+", "devices/+/messages/events/", true, false},
		{"gw1/+", "devices/gw1/modules/+/#", false, false},
		{"gw1/#", "devices/gw1/modules/#/#", false, false},
		{"gw1/a/b", "devices/gw1/modules/a/b/#", false, false},
		{"gw1/", "devices/gw1/modules//#", false, false},
	} {
		if got := allowed(c.id, c.topic, c.write); got != c.want {
			t.Errorf("allowed(%q, %q, write=%v) = %v, want %v", c.id, c.topic, c.write, got, c.want)
		}
	}
}

// TestWildcardIDGrantsNothing runs the broker with clients whose ids
// bypassed validation ("+", "#", a module "gw1/+"): a policy written with
// placeholders grants them none of the other devices' topics, while a
// normal id keeps its grant.
func TestWildcardIDGrantsNothing(t *testing.T) {
	p, err := ParsePolicy([]byte(`{"mqttBroker":{"authorizations":[{"identities":["{{iot:identity}}"],"allow":[
	  {"operations":["mqtt:publish","mqtt:subscribe"],"resources":["shared/{{iot:device_id}}/#","mods/{{iot:module_id}}/#"]}]}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, "", queue.Options{}, func(o *Options) {
		o.Auth = passwords{"dev1": "pw", "+": "pw", "#": "pw", edgeID + "/+": "pw"}
		o.Policy = p
	})
	granted := func(c paho.Client, filter string) bool {
		tok := c.Subscribe(filter, 1, func(paho.Client, paho.Message) {})
		wait(t, tok)
		return tok.(*paho.SubscribeToken).Result()[filter] < 0x80
	}
	dev1 := e.client("dev1", "pw")
	if !granted(dev1, "shared/dev1/#") {
		t.Fatal("dev1 lost its own grant")
	}
	for id, filters := range map[string][]string{
		"+":           {"shared/+/#", "shared/dev1/#", "devices/+/messages/devicebound/#"},
		"#":           {"shared/#", "shared/dev1/#", "devices/#"},
		edgeID + "/+": {"mods/+/#", "mods/a/#", "devices/" + edgeID + "/modules/+/#"},
	} {
		c := e.client(id, "pw")
		for _, f := range filters {
			if granted(c, f) {
				t.Errorf("client %q was granted %q", id, f)
			}
		}
	}
}
