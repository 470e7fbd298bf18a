package samples_test

import (
	"testing"

	"github.com/outpost-edge/outpost/broker"
	"github.com/outpost-edge/outpost/broker/brokertest"
)

const edgeID = brokertest.EdgeID

// newHarness is brokertest's real edge broker with the samples' modules:
// sensor, filter, and junk (which sends what is not a reading).
func newHarness(t *testing.T, routes string, change func(*broker.Options)) *brokertest.Harness {
	t.Helper()
	return brokertest.New(t, brokertest.Options{
		Routes:     routes,
		Identities: []string{edgeID, edgeID + "/sensor", edgeID + "/filter", edgeID + "/junk"},
		Broker:     change,
	})
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var eventually = brokertest.Eventually
