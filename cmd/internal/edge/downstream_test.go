package edge

import (
	"testing"

	"github.com/outpost-edge/outpost/broker"
	"github.com/outpost-edge/outpost/sync/downstream"
)

// The parent edge hands its children the C2D messages its broker queued
// for their devices: both must name that queue the same way (sync cannot
// import the broker, so the name is written twice and held together here).
func TestC2DQueueNamedAsTheBrokerDoes(t *testing.T) {
	if got, want := downstream.C2DQueue("dev1"), broker.QueueName("c2d/dev1", 0); got != want {
		t.Fatalf("downstream.C2DQueue = %q, the broker queues C2D in %q", got, want)
	}
}
