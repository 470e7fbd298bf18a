package broker

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/store/queue"
)

// deliverer sends a module's input messages (or a device's cloud-to-device
// messages) from their durable queues: up to InputWindow unacknowledged
// PUBLISH packets at once (not stop-and-wait), in queue order, higher
// priority first. A queue position is acknowledged once every message up
// to it was PUBACKed; whatever was not is sent again on the next
// connection (the queues rewind when the session ends).
type deliverer struct {
	s      *session
	kind   string // "inputs" or "c2d"
	prefix string // queue names it serves
	window int

	wake  chan struct{}
	acked chan uint16
	quit  chan struct{}
	wg    sync.WaitGroup

	// owned by run
	inflight map[uint16]flight
	pending  map[*queue.Queue][]uint64 // sent, in order, not yet acknowledged to the queue
	got      map[*queue.Queue]map[uint64]bool
	used     map[*queue.Queue]bool
	upTo     map[*queue.Queue]uint64 // PUBACKed prefixes not yet acknowledged to the queue
	list     []*queue.Queue          // this client's queues, refreshed when woken
	nextPID  uint16
}

type flight struct {
	q   *queue.Queue
	seq uint64
}

func newDeliverer(s *session, kind string) *deliverer {
	prefix := "c2d/" + s.device + "/"
	if kind == "inputs" {
		prefix = "modules/" + s.module + "/inputs/"
	}
	d := &deliverer{
		s: s, kind: kind, prefix: prefix, window: deliveryWindow(s.b.opts.InputWindow, s.cl),
		wake: make(chan struct{}, 1), acked: make(chan uint16, 2*s.b.opts.InputWindow), quit: make(chan struct{}),
		inflight: map[uint16]flight{}, pending: map[*queue.Queue][]uint64{},
		got: map[*queue.Queue]map[uint64]bool{}, used: map[*queue.Queue]bool{}, upTo: map[*queue.Queue]uint64{},
	}
	d.wg.Add(1)
	go d.run()
	return d
}

// deliveryWindow is how many messages may wait for their PUBACK: the
// InputWindow, or fewer if an MQTT 5 client's Receive Maximum asks so.
func deliveryWindow(input int, cl *mqtt.Client) int {
	if rm := int(cl.Properties.Props.ReceiveMaximum); cl.Properties.ProtocolVersion == 5 && rm > 0 {
		return min(input, rm)
	}
	return input
}

func (d *deliverer) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (s *session) pubacked(pid uint16) {
	s.mu.Lock()
	d := s.deliver
	s.mu.Unlock()
	if d != nil {
		select {
		case d.acked <- pid:
		case <-d.quit:
		}
	}
}

// stop ends deliveries and rewinds the queues so that everything not
// acknowledged goes out again on the next connection.
func (d *deliverer) stop() {
	close(d.quit)
	d.wg.Wait()
	for q := range d.used {
		q.Rewind()
	}
}

func (d *deliverer) run() {
	defer d.wg.Done()
	d.list = d.queues()
	for {
		if !d.fill() {
			return
		}
		select {
		case <-d.wake: // something was appended, maybe to a queue created since
			d.list = d.queues()
		case pid := <-d.acked:
			d.ack(pid)
			for more := true; more; { // every PUBACK already here: one queue acknowledgement for all
				select {
				case pid := <-d.acked:
					d.ack(pid)
				default:
					more = false
				}
			}
			d.ackQueues()
		case <-d.quit:
			return
		}
	}
}

// fill sends messages until the window is full or the queues are empty; it
// reports false when the connection is gone.
func (d *deliverer) fill() bool {
	for _, q := range d.list {
		for len(d.inflight) < d.window {
			msgs, err := q.Lease(d.window-len(d.inflight), 0)
			if err != nil {
				d.s.b.log.Error("lease for delivery", "queue", q.Name(), "err", err)
				break
			}
			if len(msgs) == 0 {
				break
			}
			d.used[q] = true
			for _, m := range msgs {
				if !d.send(q, m) {
					return false
				}
			}
		}
	}
	return true
}

func (d *deliverer) send(q *queue.Queue, m queue.Message) bool {
	pid := d.pid()
	topic := d.topic(q.Name(), m)
	err := write(d.s.cl, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   topic,
		PacketID:    pid,
		Payload:     m.Body,
		Properties:  d.properties(m, topic),
	})
	if err != nil {
		return false
	}
	d.inflight[pid] = flight{q, m.Seq}
	d.s.outstanding.Add(1)
	d.pending[q] = append(d.pending[q], m.Seq)
	return true
}

// pid picks a packet id for a delivery. mochi numbers its own (free-topic
// messages to the same client) from 1 up and knows nothing of ours, so
// ours come from 65535 down, skipping those mochi has outstanding: the two
// meet only once mochi has gone round its range with ours still pending.
func (d *deliverer) pid() uint16 {
	for {
		d.nextPID--
		if d.nextPID == 0 {
			d.nextPID = 65535
		}
		if _, busy := d.inflight[d.nextPID]; busy {
			continue
		}
		if _, busy := d.s.cl.State.Inflight.Get(d.nextPID); !busy {
			return d.nextPID
		}
	}
}

// ack records a PUBACK and moves the queue's acknowledgement up to the
// longest fully PUBACKed prefix (ackQueues sends it).
func (d *deliverer) ack(pid uint16) {
	f, ok := d.inflight[pid]
	if !ok {
		return
	}
	delete(d.inflight, pid)
	d.s.b.stats.Delivered.Add(1)
	d.s.delivered.Add(1)
	d.s.outstanding.Add(-1)
	if d.got[f.q] == nil {
		d.got[f.q] = map[uint64]bool{}
	}
	d.got[f.q][f.seq] = true
	var upTo uint64
	p := d.pending[f.q]
	for len(p) > 0 && d.got[f.q][p[0]] {
		upTo = p[0]
		delete(d.got[f.q], p[0])
		p = p[1:]
	}
	d.pending[f.q] = p
	if upTo > 0 {
		d.upTo[f.q] = upTo
	}
}

// ackQueues acknowledges the PUBACKed prefixes to their queues without
// waiting for the commits: the next messages go out meanwhile (waiting
// held deliveries to one message per commit, an fsync in power
// durability). What a crash loses of these acknowledgements is delivered
// again, as at-least-once delivery allows.
func (d *deliverer) ackQueues() {
	for q, upTo := range d.upTo {
		delete(d.upTo, q)
		if err := q.AckAsync(upTo, func(err error) { d.ackFailed(q, err) }); err != nil {
			d.ackFailed(q, err)
		}
	}
}

func (d *deliverer) ackFailed(q *queue.Queue, err error) {
	if err != nil {
		d.s.b.log.Error("acknowledge delivered messages", "queue", q.Name(), "err", err)
	}
}

// topic is where a message from queue name goes for this client.
func (d *deliverer) topic(name string, m queue.Message) string {
	bag := encodeBag(m.Props, outboundSys(m))
	if d.kind == "c2d" {
		return "devices/" + d.s.device + "/messages/devicebound/" + bag
	}
	input := strings.TrimPrefix(name, d.prefix)
	input = input[:strings.LastIndexByte(input, '/')] // drop the priority part
	return "devices/" + d.s.device + "/modules/" + d.s.module + "/inputs/" + input + "/" + bag
}

// properties gives an MQTT 5 client the message's properties also as
// MQTT 5 properties (the bag in the topic stays, for IoT Hub SDKs):
// application properties as user properties, contentType as the content
// type, correlationId as the correlation data, the time left before the
// message expires as its expiry interval, and the identifiers of the
// client's subscriptions that match topic.
func (d *deliverer) properties(m queue.Message, topic string) packets.Properties {
	var p packets.Properties
	if d.s.cl.Properties.ProtocolVersion != 5 {
		return p
	}
	for _, sub := range d.s.cl.State.Subscriptions.GetAll() {
		if sub.Identifier > 0 && filterCovers(sub.Filter, topic) {
			p.SubscriptionIdentifier = append(p.SubscriptionIdentifier, sub.Identifier)
		}
	}
	sort.Ints(p.SubscriptionIdentifier)
	keys := make([]string, 0, len(m.Props))
	for k := range m.Props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p.User = append(p.User, packets.UserProperty{Key: k, Val: m.Props[k]})
	}
	p.ContentType = m.Sys["contentType"]
	if cid := m.Sys["correlationId"]; cid != "" {
		p.CorrelationData = []byte(cid)
	}
	if m.TTL > 0 && !m.EnqueuedAt.IsZero() {
		left := time.Until(m.EnqueuedAt.Add(m.TTL))
		p.MessageExpiryInterval = uint32(max(1, (left+time.Second-1)/time.Second))
	}
	return p
}

// outboundSys is what a receiver learns of a message's system properties.
func outboundSys(m queue.Message) map[string]string {
	out := make(map[string]string, len(m.Sys)+1)
	for k, v := range m.Sys {
		if k != "outputName" {
			out[k] = v
		}
	}
	out["messageId"] = m.ID
	return out
}

// queues lists this deliverer's queues, highest priority first.
func (d *deliverer) queues() []*queue.Queue {
	var names []string
	for _, n := range d.s.b.opts.Queues.Queues() {
		if strings.HasPrefix(n, d.prefix) {
			names = append(names, n)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		pi, pj := priorityOf(names[i]), priorityOf(names[j])
		if pi != pj {
			return pi < pj
		}
		return names[i] < names[j]
	})
	out := make([]*queue.Queue, 0, len(names))
	for _, n := range names {
		if q, err := d.s.b.queueNamed(n); err == nil {
			out = append(out, q)
		}
	}
	return out
}

func priorityOf(name string) int {
	p := name[strings.LastIndexByte(name, '/')+1:]
	if n, err := strconv.Atoi(strings.TrimPrefix(p, "p")); err == nil {
		return n
	}
	return 1 << 31
}

// SendC2D queues a cloud-to-device message for device; it is delivered on
// devices/{d}/messages/devicebound/{bag} while the device is connected and
// subscribed, kept (durably) until then.
func (b *Broker) SendC2D(ctx context.Context, device string, m queue.Message) error {
	q, err := b.queue("c2d/"+device, 0)
	if err != nil {
		return err
	}
	if m.ID == "" {
		m.ID = queue.NewID()
	}
	if _, err := q.Append(ctx, m); err != nil {
		return err
	}
	b.appended("c2d/" + device)
	return nil
}
