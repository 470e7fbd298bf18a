package broker_test

import (
	"testing"

	"github.com/outpost-edge/outpost/broker"
	"github.com/outpost-edge/outpost/broker/brokertest"
)

// A generic client may not take an IoT Hub identity's id, but an id that no
// identity can have (the Paho interoperability suite connects as "clean
// retained") is free.
func TestKnownOnlyForIdentityIDs(t *testing.T) {
	h := brokertest.New(t, brokertest.Options{Identities: []string{"leaf1", brokertest.EdgeID + "/filter"}})
	auth := broker.CacheAuth{IDs: h.Identities, EdgeID: brokertest.EdgeID}
	for id, want := range map[string]bool{
		"leaf1": true, brokertest.EdgeID + "/filter": true, // identities in the cache
		"leaf2": false, "clean retained": false, "a/b/c": false, "": false,
	} {
		if got := auth.Known(id); got != want {
			t.Errorf("Known(%q) = %v, want %v", id, got, want)
		}
	}
}
