package broker

import (
	"errors"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/store/queue"
)

// Reason says why a publish was refused. Every refusal is counted under
// its reason (Stats.RefusedBy, `edge status`, /metrics) and logged, at most
// once per reason every 10 s with the number held back.
type Reason uint8

// Reasons for refusing a publish.
const (
	ReasonTopic     Reason = iota // a topic in the IoT Hub namespace that the edge does not serve
	ReasonMalformed               // a malformed IoT Hub topic or property bag
	ReasonIdentity                // telemetry on another identity's topic
	ReasonTooLarge                // payload over the limit
	ReasonQuota                   // a queue's cap (queue.ErrFull)
	ReasonDisk                    // the disk is below its reserve (queue.ErrNoSpace)
	ReasonStore                   // the store failed to write
	ReasonInflight                // more unacknowledged publishes than MaxInflight (the client is disconnected)
	ReasonQoS                     // QoS 2 on an IoT Hub topic (the client is disconnected)
	NumReasons
)

var reasonNames = [NumReasons]string{"topic", "malformed", "identity", "too_large", "quota", "disk", "store", "inflight", "qos"}

// String is the reason's name in status, metrics and logs.
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// storeRefusal maps a failed append to its reason and MQTT 5 code.
func storeRefusal(err error) (Reason, packets.Code) {
	switch {
	case errors.Is(err, queue.ErrNoSpace): // wraps ErrFull: test it first
		return ReasonDisk, packets.ErrQuotaExceeded
	case errors.Is(err, queue.ErrFull):
		return ReasonQuota, packets.ErrQuotaExceeded
	}
	return ReasonStore, packets.ErrImplementationSpecificError
}

// refused counts a refusal and logs it without flooding.
func (b *Broker) refused(reason Reason, clientID, topic string, err error) {
	b.stats.Refused.Add(1)
	b.stats.RefusedBy[reason].Add(1)
	if ok, held := b.refusedLog.Allow(reason.String()); ok {
		b.log.Warn("publish refused", "reason", reason.String(), "client_id", clientID, "topic", topic, "err", err,
			"refused_since_last_logged", held)
	}
}
