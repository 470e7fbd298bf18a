package hub

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// Cloud-to-device messages wait in a durable queue per device ("c2d/<d>")
// until the device's edge has stored them: the edge reports, per device,
// the highest sequence number it holds in every pull, and the hub
// acknowledges up to there.
const (
	c2dMaxCount = 1000
	c2dTTL      = protocol.C2DTTL // IoT Hub's longest retention
	c2dPerPull  = 100
)

type sendC2D struct {
	Device string        `cbor:"1,keyasint"`
	Msg    queue.Message `cbor:"2,keyasint"`
}

// SendC2D queues a message for a device behind an edge.
func (h *Hub) SendC2D(ctx context.Context, device string, m queue.Message) (string, error) {
	d, err := h.Identity(device)
	if err != nil {
		return "", err
	}
	if d.Edge {
		return "", fmt.Errorf("%w: %q is an edge device; cloud-to-device messages go to leaf devices", ErrInvalid, device)
	}
	if _, err := h.edgeOf(device); err != nil {
		return "", err
	}
	if m.ID == "" {
		m.ID = queue.NewID()
	}
	if err := h.apply(ctx, sendC2D{Device: device, Msg: m}); err != nil {
		return "", err
	}
	h.metrics.c2dSent.Add(1)
	return m.ID, nil
}

func (f *FSM) sendC2DLocked(ctx context.Context, c sendC2D) error {
	if c.Msg.ID == "" { // the queue would draw one at random: not the same on every replica
		return fmt.Errorf("%w: a cloud-to-device command without a message id (the proposer chooses it)", ErrInvalid)
	}
	q, err := f.queues.Queue("c2d/"+c.Device, queue.QueueOptions{MaxCount: c2dMaxCount, DefaultTTL: c2dTTL})
	if err != nil {
		return err
	}
	if f.c2dAtTail(q, c.Msg.ID) {
		return nil
	}
	if _, err := q.Append(ctx, c.Msg); errors.Is(err, queue.ErrFull) {
		return fmt.Errorf("%w: %d cloud-to-device messages already wait for %q; it must receive some first", ErrFull, c2dMaxCount, c.Device)
	} else if err != nil {
		return err
	}
	return nil
}

// c2dAtTail reports whether the queue's newest message is this command's
// own, appended at this command's time: the command is being applied again
// after a crash that came between its write and the applied index
// (replicated.go), and must not queue its message twice. A message sent
// again with the same id by a later command has a later time and is
// queued.
func (f *FSM) c2dAtTail(q *queue.Queue, id string) bool {
	st := q.Stats()
	if st.Appended == 0 {
		return false
	}
	last, err := q.Read(st.Appended-1, 1)
	return err == nil && len(last) == 1 && last[0].ID == id && last[0].EnqueuedAt.Equal(f.now())
}

// ackPullLocked applies an ackPull: devices in sorted order, each queue
// acknowledged up to the edge's cursor. Leasing is the queue's memory, not
// its state: rewinding first makes what is acknowledged a function of the
// stored queue and the cursor alone.
func (f *FSM) ackPullLocked(ctx context.Context, c ackPull) error {
	if err := f.twins.Ack(ctx, c.Edge, crdt.ReplicaID(c.Instance), c.VV); err != nil {
		return err
	}
	for _, device := range slices.Sorted(maps.Keys(c.C2D)) {
		if err := f.ackC2D(ctx, device, c.C2D[device]); err != nil {
			return fmt.Errorf("acknowledge the cloud-to-device messages of %q: %w", device, err)
		}
	}
	return nil
}

func (f *FSM) ackC2D(ctx context.Context, device string, cursor uint64) error {
	q, ok := f.queues.Lookup("c2d/" + device)
	if !ok {
		return nil
	}
	q.Rewind()
	defer q.Rewind() // the next pull's lease starts at the new head
	for {
		msgs, err := q.Lease(c2dPerPull, 1<<20)
		if err != nil || len(msgs) == 0 {
			return err
		}
		i := 0
		for i < len(msgs) && msgs[i].Seq <= cursor {
			i++
		}
		if i > 0 {
			if err := q.Ack(ctx, msgs[i-1].Seq); err != nil {
				return err
			}
		}
		if i < len(msgs) {
			return nil
		}
	}
}

// expireC2D removes the cloud-to-device messages whose TTL passed at the
// command's time, at the heads of the queues, at most Max of them. It is
// the only way they leave a queue unacknowledged: reads skip them without
// removing them, and no sweeper runs outside the state machine.
type expireC2D struct {
	Max int `cbor:"1,keyasint"`
}

func (f *FSM) expireC2DLocked(ctx context.Context, c expireC2D) (int, error) {
	if c.Max <= 0 {
		return 0, fmt.Errorf("%w: expireC2D of %d messages (want at least 1)", ErrInvalid, c.Max)
	}
	return f.queues.Expire(ctx, c.Max)
}

// c2dCursors are the cloud-to-device cursors of a pull that the hub
// acknowledges: those of the devices in the edge's scope, none when the
// edge counted them in another hub's sequence numbers.
func (h *Hub) c2dCursors(edge string, p protocol.Pull) map[string]uint64 {
	if p.Hub != string(h.twins().Replica()) || len(p.C2D) == 0 {
		return nil
	}
	inScope, err := h.inScope(edge) // lookups of the pull's devices, not a scan of the registry
	if err != nil {
		return nil
	}
	out := map[string]uint64{}
	for device, c := range p.C2D {
		if _, module, err := identity.SplitID(device); err == nil && module == "" && device != edge && inScope(device) {
			out[device] = c
		}
	}
	return out
}

// c2dFor returns the next messages of a device's queue past the edge's
// cursor (the pull's ackPull acknowledged those up to it).
func (h *Hub) c2dFor(device string, cursor uint64) ([]protocol.C2D, error) {
	q, ok := h.queues().Lookup("c2d/" + device)
	if !ok {
		return nil, nil
	}
	q.Rewind() // what an earlier pull handed out and the edge does not hold is sent again
	for {
		msgs, err := q.Lease(c2dPerPull, 1<<20)
		if err != nil || len(msgs) == 0 {
			return nil, err
		}
		i := 0
		for i < len(msgs) && msgs[i].Seq <= cursor { // the edge holds them
			i++
		}
		if i == len(msgs) {
			continue
		}
		out := make([]protocol.C2D, 0, len(msgs)-i)
		for _, m := range msgs[i:] {
			out = append(out, protocol.C2D{Device: device, Seq: m.Seq, ID: m.ID, Props: m.Props, Sys: m.Sys, Body: m.Body, EnqueuedAt: m.EnqueuedAt.UnixMilli()})
		}
		return out, nil
	}
}
