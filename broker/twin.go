package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/twin"
)

// twinRequest answers a twin GET or reported PATCH from the stored twin,
// with the uplink up or down, on $iothub/twin/res/{status}/?$rid=….
func (b *Broker) twinRequest(s *session, pk packets.Packet, in inbound) {
	defer s.ackNow(pk)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var status int
	var body []byte
	var extra string
	switch in.kind {
	case topicTwinGet:
		status, body = b.twinGet(ctx, s.id)
	case topicTwinReported:
		v, err := b.opts.Twins.PatchReported(ctx, s.id, s.twinSession, pk.Payload)
		status, body = twinStatus(err)
		if err == nil {
			extra = "&$version=" + fmt.Sprint(v)
		}
	}
	if in.rid == "" || !s.has("twin") {
		return // no request id or no subscription: nobody to answer
	}
	topic := fmt.Sprintf("$iothub/twin/res/%d/?$rid=%s%s", status, url.QueryEscape(in.rid), extra)
	if err := s.publish(topic, body); err != nil {
		b.log.Debug("twin response not sent", "client_id", s.id, "err", err)
	}
}

func (b *Broker) twinGet(ctx context.Context, id string) (int, []byte) {
	v, err := b.opts.Twins.Get(id)
	if errors.Is(err, twin.ErrNotFound) {
		if !b.opts.StandaloneTwins {
			return 503, errorBody(fmt.Errorf("the twin of %s has not been received from the hub yet; retry once the edge is connected", id))
		}
		// Standalone: the twin was never written, so it is empty, as on
		// IoT Hub before any write.
		if err = b.opts.Twins.Ensure(ctx, id); err == nil {
			v, err = b.opts.Twins.Get(id)
		}
	}
	if err != nil {
		b.log.Error("twin get", "twin", id, "err", err)
		return 500, errorBody(err)
	}
	return 200, v.DeviceJSON()
}

// twinStatus maps a reported PATCH result to IoT Hub's status codes.
func twinStatus(err error) (int, []byte) {
	switch {
	case err == nil:
		return 204, nil
	case errors.Is(err, twin.ErrInvalid), errors.Is(err, twin.ErrTooLarge):
		return 400, errorBody(err)
	case errors.Is(err, twin.ErrStaleSession):
		return 409, errorBody(err)
	}
	return 500, errorBody(err)
}

func errorBody(err error) []byte {
	b, _ := json.Marshal(map[string]string{"message": err.Error()})
	return b
}

// NotifyDesired sends desired-property changes (from a hub delta applied to
// the twin store) to the connected devices and modules they concern, as
// IoT Hub does: $iothub/twin/PATCH/properties/desired/?$version=n. A client
// that is not connected gets them with its next twin GET.
func (b *Broker) NotifyDesired(changes []twin.Change) {
	for _, c := range changes {
		if c.Section != crdt.Desired || len(c.Patch) == 0 {
			continue
		}
		s := b.sessionOf(c.ID)
		if s == nil || !s.has("desired") {
			continue
		}
		patch := make(map[string]any, len(c.Patch)+1)
		for k, v := range c.Patch {
			patch[k] = v
		}
		patch["$version"] = c.Version
		body, _ := json.Marshal(patch)
		topic := fmt.Sprintf("$iothub/twin/PATCH/properties/desired/?$version=%d", c.Version)
		if err := s.publish(topic, body); err != nil {
			b.log.Debug("desired notification not sent", "client_id", s.id, "err", err)
		}
	}
}
