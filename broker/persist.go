package broker

import (
	"bytes"
	"errors"
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/mqttstate"
	"github.com/outpost-edge/outpost/store/ratelog"
)

// persist is mochi's storage hook on our store (store/mqttstate over the
// edge's one kv.DB, never a second database): retained messages, the wills
// of connected clients, and persistent sessions (MQTT 3.1.1 clean session
// false, MQTT 5 session expiry > 0) with their subscriptions and the QoS >
// 0 messages in flight to them (and inbound QoS 2 awaiting PUBREL) survive
// a restart of the edge, kill -9 included.
//
// Ordering contract: every write is enqueued with kv.DB.CommitAsync
// synchronously inside the mochi hook call that causes it, never from
// another goroutine. A barrier db.CommitAsync(nil, done) enqueued after a
// publish's fan-out has returned therefore completes only once the records
// of that fan-out (messages in flight to offline subscribers, the retained
// message) are durable, or have failed.
//
// mochi moves an outbound QoS 2 message to PUBREL without a hook, so its
// record stays the PUBLISH: after a restart the client gets the PUBLISH
// again (DUP) instead of the PUBREL, which it must not deliver twice (it
// still holds the packet id until PUBREL).
//
// What is not written: clean sessions (only a client record while the
// client has a will, deleted when it disconnects), the server's own PUBACK
// of an inbound QoS 1 publish (mochi completes it at once: two writes per
// message for nothing), $SYS. Deletes follow OnQosComplete, OnQosDropped,
// OnClientExpired, OnRetainedExpired and the end of a session; the gap of
// mochi v2.7.9 where a full outbound channel rolls an in-flight message
// back without OnQosDropped is closed in OnPublishDropped, which deletes
// what mochi no longer holds.
//
// Bounds: the records of a persistent session are its client record, its
// subscriptions (Limits.MaxSubscriptions) and at most Limits.MaxInflight
// messages in flight (mochi's MaximumInflight; beyond it mochi drops the
// message, counted in its $SYS InflightDropped), each at most
// Capabilities.MaximumPacketSize; they last until the session expires
// (MQTT 5 session expiry; a 3.1.1 clean-session-false session until
// mochi's MaximumSessionExpiryInterval) or the client connects clean.
// Retained messages: one per topic. In memory the hook keeps the packet
// ids it stored per client (2 bytes each within MaxInflight) and the set of
// client ids with a record. A write refused because the disk is full (kv's
// Space gate) or failed is counted (Stats.StateFailed) and logged at most
// once per kind every 10 s; a refused set deletes the key instead, so an
// older record never comes back in its place.
type persist struct {
	mqtt.HookBase
	b   *Broker
	db  *kv.DB
	rl  ratelog.Limiter
	now func() int64

	mu       sync.Mutex
	inflight map[string]map[uint16]bool // packet ids stored, by client id
	clients  map[string]string          // client ids with a record → account
	boot     *mqttstate.State           // read at Serve, until OnStarted
	wills    []pendingWill              // of clients whose connection ended with the edge
}

func newPersist(b *Broker, db *kv.DB) *persist {
	return &persist{b: b, db: db, now: func() int64 { return b.opts.Now().Unix() },
		inflight: map[string]map[uint16]bool{}, clients: map[string]string{}}
}

func (p *persist) ID() string { return "outpost-persist" }

func (p *persist) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnWillSent, mqtt.OnSubscribed, mqtt.OnUnsubscribed,
		mqtt.OnRetainMessage, mqtt.OnRetainedExpired, mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped,
		mqtt.OnPublishDropped, mqtt.OnClientExpired, mqtt.OnStarted,
		mqtt.StoredClients, mqtt.StoredSubscriptions, mqtt.StoredInflightMessages, mqtt.StoredRetainedMessages,
	}, []byte{b})
}

// persistent tells a session that outlives its connection.
func persistent(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

// takenOver tells a connection replaced by a newer one of the same client
// id: what it reports must not touch the newer one's records.
func takenOver(cl *mqtt.Client) bool {
	return cl.IsTakenOver() || errors.Is(cl.StopCause(), packets.ErrSessionTakenOver)
}

// write enqueues ops (see the ordering contract).
func (p *persist) write(what string, ops ...kv.Op) {
	if len(ops) == 0 {
		return
	}
	p.b.stateWrites.Add(1) // a free-topic PUBACK after a fan-out that wrote waits for it (freetopic.go)
	p.db.CommitAsync(ops, func(err error) {
		if err != nil {
			p.failed(what, err)
		}
	})
}

// put writes a record unless the disk is full, in which case it deletes
// the key: a record that cannot be updated must not survive as it was.
func (p *persist) put(what string, op kv.Op, err error) {
	if err == nil {
		err = p.db.Admit(op)
	}
	if err != nil {
		p.failed(what, err)
		if op.Key != nil {
			p.write(what, kv.Del(op.Key))
		}
		return
	}
	p.write(what, op)
}

func (p *persist) failed(what string, err error) {
	p.b.stats.StateFailed.Add(1)
	if ok, n := p.rl.Allow(what); ok {
		p.b.log.Error("MQTT session state not stored; it will not survive a restart of the edge", "record", what, "err", err,
			"failed_since_last_logged", n)
	}
}

func (p *persist) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if cl.Net.Inline {
		return
	}
	if cl.Properties.Clean {
		// A clean start ends what a previous session of this client id
		// left: when it took a live connection over, mochi cleared that
		// one's subscriptions and messages through hooks that skip a
		// taken-over connection.
		p.mu.Lock()
		_, had := p.clients[cl.ID]
		had = had || len(p.inflight[cl.ID]) > 0
		p.mu.Unlock()
		if had {
			p.endSession(cl.ID)
			if s := p.b.session(cl); s != nil {
				p.b.setAccount(cl.ID, s.login.Account) // endSession forgot it
			}
		}
	}
	p.saveClient(cl)
}

// saveClient writes the record of cl if its session or its will must
// survive the connection, else deletes the record it had.
func (p *persist) saveClient(cl *mqtt.Client) {
	keep := persistent(cl) || cl.Properties.Will.Flag != 0
	rec := p.clientRecord(cl)
	p.mu.Lock()
	account, had := p.clients[cl.ID]
	if s := p.b.session(cl); s != nil {
		account = s.login.Account // the session is gone when it disconnects
	}
	rec.Account = account
	if keep {
		p.clients[cl.ID] = account
	} else {
		delete(p.clients, cl.ID)
	}
	p.mu.Unlock()
	switch {
	case keep:
		op, err := mqttstate.PutClient(rec)
		p.put("client", op, err)
	case had:
		p.write("client", mqttstate.DeleteClient(cl.ID))
	}
}

func (p *persist) OnWillSent(cl *mqtt.Client, _ packets.Packet) {
	if cl.Net.Inline || takenOver(cl) {
		return
	}
	p.saveClient(cl)
}

// OnDisconnect ends the records of a clean session, and keeps those of a
// persistent one up to date (its will gone after a DISCONNECT, its expiry
// as the DISCONNECT set it). Clients restored at Serve come through here
// too; StoredClients took care of them.
func (p *persist) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if cl.Net.Inline || cl.Net.Conn == nil || takenOver(cl) {
		return
	}
	if !expire {
		p.saveClient(cl)
		return
	}
	p.endSession(cl.ID)
}

func (p *persist) OnClientExpired(cl *mqtt.Client) { p.endSession(cl.ID) }

// endSession deletes everything stored of a client id and forgets its
// account.
func (p *persist) endSession(id string) {
	p.mu.Lock()
	defer p.mu.Unlock() // held while enqueuing: no put of this client slips in between
	_, had := p.clients[id]
	had = had || len(p.inflight[id]) > 0
	delete(p.clients, id)
	delete(p.inflight, id)
	p.b.setAccount(id, "")
	if !had {
		return // a clean session without a will: nothing was written
	}
	// DeleteSession lists what is committed: let this client's writes
	// still queued land first, or they would outlive the session.
	done := make(chan error, 1)
	p.db.CommitAsync(nil, func(err error) { done <- err })
	<-done
	ops, err := mqttstate.DeleteSession(p.db, id)
	if err != nil {
		p.failed("session", err)
		return
	}
	p.write("session", ops...)
}

func (p *persist) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if cl.Net.Inline || !persistent(cl) {
		return
	}
	for i, f := range pk.Filters {
		if i >= len(codes) || codes[i] >= 0x80 || f.Filter == "" {
			continue
		}
		op, err := mqttstate.PutSubscription(mqttstate.Subscription{Client: cl.ID, Filter: f.Filter, Qos: codes[i],
			Identifier: f.Identifier, NoLocal: f.NoLocal, RetainAsPublished: f.RetainAsPublished, RetainHandling: f.RetainHandling})
		p.put("subscription", op, err)
	}
}

func (p *persist) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline || takenOver(cl) || !persistent(cl) {
		return
	}
	for _, f := range pk.Filters {
		p.write("subscription", mqttstate.DeleteSubscription(cl.ID, f.Filter))
	}
}

func (p *persist) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	if strings.HasPrefix(pk.TopicName, "$SYS") {
		return
	}
	switch r {
	case 1:
		op, err := mqttstate.PutRetained(messageRecord(pk))
		p.put("retained", op, err)
	case -1:
		p.write("retained", mqttstate.DeleteRetained(pk.TopicName))
	}
}

func (p *persist) OnRetainedExpired(topic string) {
	p.write("retained", mqttstate.DeleteRetained(topic))
}

// OnQosPublish stores a message entering a persistent session's inflight
// map: a PUBLISH to it, or the PUBREC of its inbound QoS 2 publish. A
// resend after a reconnect is already stored.
func (p *persist) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	t := pk.FixedHeader.Type
	if cl.Net.Inline || (t != packets.Publish && t != packets.Pubrec && t != packets.Pubrel) || !persistent(cl) {
		return
	}
	m := messageRecord(pk)
	m.Client = cl.ID
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := p.inflight[cl.ID]
	if ids[pk.PacketID] && t == packets.Publish && pk.FixedHeader.Dup {
		return // mochi's resend after a reconnect: stored already
	}
	// Otherwise write, even over a record of this id: a stale one (a
	// message mochi dropped or renumbered without a hook) must not keep
	// a new message from being stored before its PUBACK.
	if ids == nil {
		ids = map[uint16]bool{}
		p.inflight[cl.ID] = ids
	}
	op, err := mqttstate.PutInflight(m)
	if err == nil {
		if err = p.db.Admit(op); err == nil {
			ids[pk.PacketID] = true
			p.write("inflight", op)
			return
		}
	}
	p.failed("inflight", err)
}

func (p *persist) OnQosComplete(cl *mqtt.Client, pk packets.Packet) { p.dropInflight(cl, pk.PacketID) }
func (p *persist) OnQosDropped(cl *mqtt.Client, pk packets.Packet)  { p.dropInflight(cl, pk.PacketID) }

func (p *persist) dropInflight(cl *mqtt.Client, id uint16) {
	if cl.Net.Inline || takenOver(cl) {
		return // a takeover moved the messages to the newer connection
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if ids := p.inflight[cl.ID]; ids[id] {
		delete(ids, id)
		p.write("inflight", mqttstate.DeleteInflight(cl.ID, id))
	}
}

// OnPublishDropped: mochi rolled a message back from cl's inflight map
// (its outbound channel was full) without OnQosDropped, and names only the
// publisher's packet, not the id it gave the message: delete every stored
// message of cl that mochi no longer holds. Under p.mu, a message set in
// mochi's map after this looked is stored after these deletes.
func (p *persist) OnPublishDropped(cl *mqtt.Client, _ packets.Packet) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id := range p.inflight[cl.ID] {
		if _, ok := cl.State.Inflight.Get(id); !ok {
			delete(p.inflight[cl.ID], id)
			p.write("inflight", mqttstate.DeleteInflight(cl.ID, id))
		}
	}
}
