package broker

import (
	"fmt"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/store/mqttstate"
)

// Restore at Serve: mochi asks for clients, subscriptions, messages in
// flight and retained messages, in that order, then starts its listeners
// and calls OnStarted.
//
// Wills. mochi publishes the will of a connection that ends without a
// DISCONNECT, also when the edge stops gracefully (it disconnects every
// client). When the edge dies (kill -9, power cut) with clients connected,
// their client records still hold their wills: OnStarted publishes each
// once the edge is back, as the will announces exactly that ungraceful
// loss, then clears it (a clean session's record is deleted). A will delay
// still running when the edge died is not waited for again. Mosquitto 2
// keeps its sessions in memory and saves them only at its autosave
// interval or shutdown, so after kill -9 it neither restores the sessions
// nor sends those wills; Outpost keeps both.
type pendingWill struct {
	rec        mqttstate.Client
	persistent bool
}

// load reads the stored state once, at the first Stored* call.
func (p *persist) load() *mqttstate.State {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.boot != nil {
		return p.boot
	}
	st, err := mqttstate.Load(p.db)
	if err != nil {
		p.failed("load", err)
		st = &mqttstate.State{}
	}
	if len(st.Bad) > 0 {
		p.failed("load", fmt.Errorf("%d records that cannot be read (written by a newer outpost, or damaged) are deleted", len(st.Bad)))
		p.write("load", st.Bad...)
	}
	p.boot = st
	return st
}

func (p *persist) StoredClients() ([]storage.Client, error) {
	st := p.load()
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []storage.Client
	live := map[string]bool{}
	for _, c := range st.Clients {
		keep := c.Protocol == 5 && c.SessionExpiry > 0 || c.Protocol < 5 && !c.Clean
		if c.Will != nil {
			p.wills = append(p.wills, pendingWill{rec: c, persistent: keep})
		}
		p.clients[c.ID] = c.Account
		if c.Account != "" {
			p.b.setAccount(c.ID, c.Account) // the will is checked as its client's
		}
		if !keep {
			continue // only its will to send (OnStarted)
		}
		live[c.ID] = true
		out = append(out, storageClient(c))
	}
	p.dropOrphans(st, live)
	return out, nil
}

// dropOrphans deletes subscriptions and messages of clients without a
// persistent session (their record was deleted, or never committed).
func (p *persist) dropOrphans(st *mqttstate.State, live map[string]bool) {
	subs := st.Subscriptions[:0]
	for _, s := range st.Subscriptions {
		if live[s.Client] {
			subs = append(subs, s)
		} else {
			p.write("subscription", mqttstate.DeleteSubscription(s.Client, s.Filter))
		}
	}
	st.Subscriptions = subs
	now := p.now()
	msgs := st.Inflight[:0]
	for _, m := range st.Inflight {
		if live[m.Client] && (m.Expiry == 0 || m.Expiry > now) {
			msgs = append(msgs, m)
			p.markInflight(m.Client, m.PacketID)
		} else {
			p.write("inflight", mqttstate.DeleteInflight(m.Client, m.PacketID))
		}
	}
	st.Inflight = msgs
}

func (p *persist) markInflight(client string, id uint16) {
	ids := p.inflight[client]
	if ids == nil {
		ids = map[uint16]bool{}
		p.inflight[client] = ids
	}
	ids[id] = true
}

func (p *persist) StoredSubscriptions() ([]storage.Subscription, error) {
	var out []storage.Subscription
	for _, s := range p.load().Subscriptions {
		out = append(out, storage.Subscription{Client: s.Client, Filter: s.Filter, Qos: s.Qos, Identifier: s.Identifier,
			NoLocal: s.NoLocal, RetainAsPublished: s.RetainAsPublished, RetainHandling: s.RetainHandling})
	}
	return out, nil
}

func (p *persist) StoredInflightMessages() ([]storage.Message, error) {
	var out []storage.Message
	for _, m := range p.load().Inflight {
		out = append(out, storageMessage(m))
	}
	return out, nil
}

func (p *persist) StoredRetainedMessages() ([]storage.Message, error) {
	st := p.load()
	now := p.now()
	var out []storage.Message
	kept := st.Retained[:0]
	for _, m := range st.Retained {
		if m.Expiry != 0 && m.Expiry <= now {
			p.write("retained", mqttstate.DeleteRetained(m.Topic))
			continue
		}
		kept = append(kept, m)
		out = append(out, storageMessage(m))
	}
	st.Retained = kept
	return out, nil
}

// OnStarted gives restored messages back their expiry (mochi's storage
// records have none) and publishes the wills of the clients whose
// connection ended with the edge.
func (p *persist) OnStarted() {
	p.mu.Lock()
	st, wills := p.boot, p.wills
	p.boot, p.wills = nil, nil
	p.mu.Unlock()
	if st != nil {
		p.restoreExpiry(st)
	}
	for _, w := range wills {
		p.publishWill(w)
	}
}

func (p *persist) restoreExpiry(st *mqttstate.State) {
	srv := p.b.srv
	for _, m := range st.Inflight {
		if m.Expiry == 0 {
			continue
		}
		if cl, ok := srv.Clients.Get(m.Client); ok {
			if pk, ok := cl.State.Inflight.Get(m.PacketID); ok {
				pk.Expiry, pk.ProtocolVersion = m.Expiry, m.Protocol
				cl.State.Inflight.Set(pk)
			}
		}
	}
	for _, m := range st.Retained {
		if m.Expiry != 0 {
			sm := storageMessage(m)
			pk := sm.ToPacket()
			pk.Expiry, pk.ProtocolVersion = m.Expiry, m.Protocol
			srv.Topics.RetainMessage(pk)
		}
	}
}

// publishWill publishes a will as mochi would have, once OnWill's check
// passes (mochi checks nothing), then clears it from the record.
func (p *persist) publishWill(w pendingWill) {
	c := w.rec
	if t := c.Will.Topic; !p.b.mayAccess(c.ID, t, true) || c.Will.Qos == 2 && iotHubTopic(t) {
		p.b.denied(c.ID, t, true)
	} else {
		p.injectWill(c)
	}
	if !w.persistent {
		p.endSession(c.ID)
		return
	}
	c.Will = nil
	op, err := mqttstate.PutClient(c)
	p.put("client", op, err)
}

// injectWill publishes the will of c from a private inline client
// carrying c's id (subscribers with No Local skip it).
func (p *persist) injectWill(c mqttstate.Client) {
	will := c.Will
	cl := p.b.srv.NewClient(nil, "local", c.ID, true)
	cl.Properties.ProtocolVersion = c.Protocol
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: will.Qos, Retain: will.Retain},
		TopicName:   will.Topic,
		Payload:     will.Payload,
		Properties:  packets.Properties{User: userProps(will.User)},
	}
	if will.Qos > 0 {
		pk.PacketID = 1 // a QoS > 0 PUBLISH must carry one; an inline client's ingress is never acknowledged
	}
	if err := p.b.srv.InjectPacket(cl, pk); err != nil {
		p.b.log.Warn("will not published after restart", "client_id", c.ID, "topic", will.Topic, "err", err)
		return
	}
	p.b.stats.WillsAfterRestart.Add(1)
	p.b.log.Info("will published: the client was connected when the edge stopped", "client_id", c.ID, "topic", will.Topic)
}

func (p *persist) clientRecord(cl *mqtt.Client) mqttstate.Client {
	pr := cl.Properties.Props
	c := mqttstate.Client{ID: cl.ID, Listener: cl.Net.Listener, Username: cl.Properties.Username,
		Protocol: cl.Properties.ProtocolVersion, Clean: cl.Properties.Clean,
		SessionExpiry: pr.SessionExpiryInterval, SessionExpiryFlag: pr.SessionExpiryIntervalFlag,
		ReceiveMaximum: pr.ReceiveMaximum, TopicAliasMaximum: pr.TopicAliasMaximum, MaximumPacketSize: pr.MaximumPacketSize,
		RequestProblem: pr.RequestProblemInfo, RequestProblemSet: pr.RequestProblemInfoFlag,
		RequestResponse: pr.RequestResponseInfo, User: ourProps(pr.User)}
	if w := cl.Properties.Will; w.Flag != 0 {
		c.Will = &mqttstate.Will{Topic: w.TopicName, Payload: w.Payload, Qos: w.Qos, Retain: w.Retain,
			Delay: w.WillDelayInterval, User: ourProps(w.User)}
	}
	return c
}

func storageClient(c mqttstate.Client) storage.Client {
	return storage.Client{ID: c.ID, Listener: c.Listener, Username: c.Username, ProtocolVersion: c.Protocol, Clean: c.Clean,
		Properties: storage.ClientProperties{SessionExpiryInterval: c.SessionExpiry, SessionExpiryIntervalFlag: c.SessionExpiryFlag,
			ReceiveMaximum: c.ReceiveMaximum, TopicAliasMaximum: c.TopicAliasMaximum, MaximumPacketSize: c.MaximumPacketSize,
			RequestProblemInfo: c.RequestProblem, RequestProblemInfoFlag: c.RequestProblemSet,
			RequestResponseInfo: c.RequestResponse, User: userProps(c.User)}}
}

func messageRecord(pk packets.Packet) mqttstate.Message {
	pr := pk.Properties
	return mqttstate.Message{PacketID: pk.PacketID, Origin: pk.Origin, Type: pk.FixedHeader.Type, Qos: pk.FixedHeader.Qos,
		Retain: pk.FixedHeader.Retain, Dup: pk.FixedHeader.Dup, Topic: pk.TopicName, Payload: pk.Payload,
		Created: pk.Created, Expiry: max(pk.Expiry, 0), Protocol: pk.ProtocolVersion,
		Props: mqttstate.Props{PayloadFormat: pr.PayloadFormat, PayloadFormatSet: pr.PayloadFormatFlag,
			MessageExpiry: pr.MessageExpiryInterval, ContentType: pr.ContentType, ResponseTopic: pr.ResponseTopic,
			CorrelationData: pr.CorrelationData, SubscriptionIDs: pr.SubscriptionIdentifier, User: ourProps(pr.User)}}
}

func storageMessage(m mqttstate.Message) storage.Message {
	return storage.Message{Client: m.Client, Origin: m.Origin, PacketID: m.PacketID, TopicName: m.Topic, Payload: m.Payload,
		Created:     m.Created,
		FixedHeader: packets.FixedHeader{Type: m.Type, Qos: m.Qos, Retain: m.Retain, Dup: m.Dup},
		Properties: storage.MessageProperties{PayloadFormat: m.Props.PayloadFormat, PayloadFormatFlag: m.Props.PayloadFormatSet,
			MessageExpiryInterval: m.Props.MessageExpiry, ContentType: m.Props.ContentType, ResponseTopic: m.Props.ResponseTopic,
			CorrelationData: m.Props.CorrelationData, SubscriptionIdentifier: m.Props.SubscriptionIDs, User: userProps(m.Props.User)}}
}

func ourProps(in []packets.UserProperty) []mqttstate.Property {
	var out []mqttstate.Property
	for _, u := range in {
		out = append(out, mqttstate.Property{Key: u.Key, Value: u.Val})
	}
	return out
}

func userProps(in []mqttstate.Property) []packets.UserProperty {
	var out []packets.UserProperty
	for _, u := range in {
		out = append(out, packets.UserProperty{Key: u.Key, Val: u.Value})
	}
	return out
}
