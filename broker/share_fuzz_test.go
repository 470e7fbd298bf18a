package broker

import (
	"strings"
	"testing"
)

// A shared subscription is authorized as its filter: "$share/<g>/<f>" is
// allowed only where f itself is, and never on an IoT Hub topic, whatever
// the group and the filter.
func FuzzSharedSubscriptionNeverWidens(f *testing.F) {
	pol, err := ParsePolicy([]byte(`{"mqttBroker":{"authorizations":[
		{"identities":["{{iot:identity}}"],"allow":[{"operations":["mqtt:subscribe"],"resources":["free/{{iot:device_id}}/#","shared/+/x"]}],
		 "deny":[{"operations":["mqtt:subscribe"],"resources":["free/+/secret"]}]}]}}`))
	if err != nil {
		f.Fatal(err)
	}
	b := &Broker{}
	b.policy.Store(pol)
	for _, s := range []string{"free/dev1/#", "#", "+/x", "devices/dev1/messages/devicebound/#", "$iothub/methods/POST/#",
		"shared/a/x", "free/dev1/secret", "", "$share/g/#"} {
		f.Add("g", s)
	}
	f.Fuzz(func(t *testing.T, group, filter string) {
		if group == "" || strings.ContainsAny(group, "/+#") {
			return // mochi refuses such a shared filter before any check
		}
		for _, id := range []string{"dev1", edgeID + "/a"} {
			for _, prefix := range []string{"$share/", "$SHARE/"} {
				shared := prefix + group + "/" + filter
				if !b.mayAccess(id, shared, false) {
					continue
				}
				if !b.mayAccess(id, filter, false) {
					t.Fatalf("%s may subscribe to %q but not to %q", id, shared, filter)
				}
				if iotHubTopic(filter) {
					t.Fatalf("%s may subscribe to %q, an IoT Hub filter shared", id, shared)
				}
			}
		}
	})
}
