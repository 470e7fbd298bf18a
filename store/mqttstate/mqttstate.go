// Package mqttstate keeps the MQTT session state of the edge's broker in kv,
// so that it survives a restart: client records (persistent sessions and
// the wills of connected clients), their subscriptions, the QoS > 0
// messages in flight to or from them, and retained messages.
//
// Records are deterministic CBOR under kv.PrefixMQTT; this package owns the
// key layout after the prefix:
//
//	M c <client id> 0             Client
//	M s <client id> 0 <filter>    Subscription
//	M f <client id> 0 <id u16>    Message in flight (by packet id)
//	M r <topic>                   Message retained
//
// MQTT strings never contain U+0000 (MQTT 3.1.1 §1.5.3, MQTT 5 §1.5.4), so
// the 0 after a client id ends it unambiguously; a name that holds one is
// refused (ErrInvalid). The package builds kv.Ops and reads records back;
// the caller commits the ops (the broker with kv.CommitAsync, inside
// mochi's hook calls, which orders them). It starts no goroutines and
// knows nothing of mochi: its records are its own.
package mqttstate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/kv"
)

// Record families after kv.PrefixMQTT.
const (
	famClient   byte = 'c'
	famSub      byte = 's'
	famInflight byte = 'f'
	famRetained byte = 'r'
)

// ErrInvalid: a client id, filter or topic that cannot be a key (empty, or
// holding a 0 byte, which MQTT forbids).
var ErrInvalid = errors.New("mqttstate: name is empty or holds a 0 byte")

// Property is one MQTT 5 user property.
type Property struct {
	Key   string `cbor:"1,keyasint,omitempty"`
	Value string `cbor:"2,keyasint,omitempty"`
}

// Will is a client's will message, as its CONNECT set it.
type Will struct {
	Topic   string     `cbor:"1,keyasint,omitempty"`
	Payload []byte     `cbor:"2,keyasint,omitempty"`
	Qos     byte       `cbor:"3,keyasint,omitempty"`
	Retain  bool       `cbor:"4,keyasint,omitempty"`
	Delay   uint32     `cbor:"5,keyasint,omitempty"` // will delay interval, seconds
	User    []Property `cbor:"6,keyasint,omitempty"`
}

// Client is a client's session as its CONNECT set it.
type Client struct {
	ID string `cbor:"1,keyasint"`
	// Account is the local MQTT account of a generic client, "" for an
	// IoT Hub identity.
	Account           string     `cbor:"2,keyasint,omitempty"`
	Listener          string     `cbor:"3,keyasint,omitempty"`
	Username          []byte     `cbor:"4,keyasint,omitempty"`
	Protocol          byte       `cbor:"5,keyasint,omitempty"` // 3, 4 (3.1.1) or 5
	Clean             bool       `cbor:"6,keyasint,omitempty"`
	SessionExpiry     uint32     `cbor:"7,keyasint,omitempty"` // seconds
	SessionExpiryFlag bool       `cbor:"8,keyasint,omitempty"`
	ReceiveMaximum    uint16     `cbor:"9,keyasint,omitempty"`
	TopicAliasMaximum uint16     `cbor:"10,keyasint,omitempty"`
	MaximumPacketSize uint32     `cbor:"11,keyasint,omitempty"`
	RequestProblem    byte       `cbor:"12,keyasint,omitempty"`
	RequestProblemSet bool       `cbor:"13,keyasint,omitempty"`
	RequestResponse   byte       `cbor:"14,keyasint,omitempty"`
	User              []Property `cbor:"15,keyasint,omitempty"`
	// Will is the will still to be published when the connection ends
	// without a DISCONNECT; nil when there is none (not set, or sent).
	Will *Will `cbor:"16,keyasint,omitempty"`
}

// Subscription is one topic filter a client holds.
type Subscription struct {
	Client            string `cbor:"1,keyasint"`
	Filter            string `cbor:"2,keyasint"`
	Qos               byte   `cbor:"3,keyasint,omitempty"`
	Identifier        int    `cbor:"4,keyasint,omitempty"`
	NoLocal           bool   `cbor:"5,keyasint,omitempty"`
	RetainAsPublished bool   `cbor:"6,keyasint,omitempty"`
	RetainHandling    byte   `cbor:"7,keyasint,omitempty"`
}

// Message is a message in flight (Client and PacketID set) or retained.
type Message struct {
	Client   string `cbor:"1,keyasint,omitempty"` // the recipient, in flight
	PacketID uint16 `cbor:"2,keyasint,omitempty"`
	Origin   string `cbor:"3,keyasint,omitempty"` // the client that published it
	Type     byte   `cbor:"4,keyasint,omitempty"` // MQTT packet type: PUBLISH, PUBREC (inbound QoS 2), PUBREL
	Qos      byte   `cbor:"5,keyasint,omitempty"`
	Retain   bool   `cbor:"6,keyasint,omitempty"`
	Dup      bool   `cbor:"7,keyasint,omitempty"`
	Topic    string `cbor:"8,keyasint,omitempty"`
	Payload  []byte `cbor:"9,keyasint,omitempty"`
	Created  int64  `cbor:"10,keyasint,omitempty"` // unix seconds
	// Expiry is when the message expires (unix seconds), 0 never.
	Expiry   int64 `cbor:"11,keyasint,omitempty"`
	Protocol byte  `cbor:"12,keyasint,omitempty"` // of the packet, as mochi keeps it
	Props    Props `cbor:"13,keyasint,omitempty"`
}

// Props are the MQTT 5 properties a PUBLISH carries on.
type Props struct {
	PayloadFormat    byte       `cbor:"1,keyasint,omitempty"`
	PayloadFormatSet bool       `cbor:"2,keyasint,omitempty"`
	MessageExpiry    uint32     `cbor:"3,keyasint,omitempty"` // seconds, as published
	ContentType      string     `cbor:"4,keyasint,omitempty"`
	ResponseTopic    string     `cbor:"5,keyasint,omitempty"`
	CorrelationData  []byte     `cbor:"6,keyasint,omitempty"`
	SubscriptionIDs  []int      `cbor:"7,keyasint,omitempty"`
	User             []Property `cbor:"8,keyasint,omitempty"`
	TopicAlias       uint16     `cbor:"9,keyasint,omitempty"`
}

func valid(name string) bool { return name != "" && !strings.ContainsRune(name, 0) }

func clientKey(fam byte, id string) []byte {
	return kv.AppendString([]byte{kv.PrefixMQTT, fam}, id)
}

func inflightKey(client string, id uint16) []byte {
	return binary.BigEndian.AppendUint16(clientKey(famInflight, client), id)
}

func set(key []byte, v any) (kv.Op, error) {
	b, err := kv.Marshal(v)
	if err != nil {
		return kv.Op{}, err
	}
	return kv.Set(key, b), nil
}

// PutClient writes a client record.
func PutClient(c Client) (kv.Op, error) {
	if !valid(c.ID) {
		return kv.Op{}, fmt.Errorf("client %q: %w", c.ID, ErrInvalid)
	}
	return set(clientKey(famClient, c.ID), c)
}

// DeleteClient deletes a client record (not its subscriptions and
// messages: DeleteSession).
func DeleteClient(id string) kv.Op { return kv.Del(clientKey(famClient, id)) }

// PutSubscription writes a subscription.
func PutSubscription(s Subscription) (kv.Op, error) {
	if !valid(s.Client) || !valid(s.Filter) {
		return kv.Op{}, fmt.Errorf("subscription %q of %q: %w", s.Filter, s.Client, ErrInvalid)
	}
	return set(append(clientKey(famSub, s.Client), s.Filter...), s)
}

// DeleteSubscription deletes a subscription.
func DeleteSubscription(client, filter string) kv.Op {
	return kv.Del(append(clientKey(famSub, client), filter...))
}

// PutInflight writes a message in flight to or from m.Client.
func PutInflight(m Message) (kv.Op, error) {
	if !valid(m.Client) {
		return kv.Op{}, fmt.Errorf("message in flight to %q: %w", m.Client, ErrInvalid)
	}
	return set(inflightKey(m.Client, m.PacketID), m)
}

// DeleteInflight deletes the message in flight of client with packet id.
func DeleteInflight(client string, id uint16) kv.Op { return kv.Del(inflightKey(client, id)) }

// PutRetained writes the retained message of m.Topic.
func PutRetained(m Message) (kv.Op, error) {
	if !valid(m.Topic) {
		return kv.Op{}, fmt.Errorf("retained message of %q: %w", m.Topic, ErrInvalid)
	}
	m.Client, m.PacketID = "", 0
	return set(append([]byte{kv.PrefixMQTT, famRetained}, m.Topic...), m)
}

// DeleteRetained deletes the retained message of topic.
func DeleteRetained(topic string) kv.Op {
	return kv.Del(append([]byte{kv.PrefixMQTT, famRetained}, topic...))
}

// DeleteSession returns the deletes of everything stored for client: its
// record, subscriptions and messages in flight. It reads what is committed;
// a caller that enqueues writes for the client concurrently orders them
// itself.
func DeleteSession(db *kv.DB, client string) ([]kv.Op, error) {
	ops := []kv.Op{DeleteClient(client)}
	for _, fam := range []byte{famSub, famInflight} {
		prefix := clientKey(fam, client)
		err := db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				ops = append(ops, kv.Op{Key: it.Item().KeyCopy(nil), Delete: true, Freed: int(it.Item().ValueSize())})
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list the session of %q: %w", client, err)
		}
	}
	return ops, nil
}

// State is everything stored.
type State struct {
	Clients       []Client
	Subscriptions []Subscription
	Inflight      []Message
	Retained      []Message
	// Bad holds the deletes of records that could not be read (a newer
	// format, a damaged value): the caller logs and removes them.
	Bad []kv.Op
}

// Load reads every record.
func Load(db *kv.DB) (*State, error) {
	st := &State{}
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kv.PrefixMQTT}, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			key := it.Item().KeyCopy(nil)
			val, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			if err := st.add(key, val); err != nil {
				st.Bad = append(st.Bad, kv.Del(key))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load MQTT state: %w", err)
	}
	return st, nil
}

// add decodes one record into st; an error leaves st as it was.
func (st *State) add(key, val []byte) error {
	fam, rest, err := splitKey(key)
	if err != nil {
		return err
	}
	switch fam {
	case famClient:
		var c Client
		if err := kv.Unmarshal(val, &c); err != nil || c.ID != rest[0] {
			return errors.Join(err, errMismatch)
		}
		st.Clients = append(st.Clients, c)
	case famSub:
		var s Subscription
		if err := kv.Unmarshal(val, &s); err != nil || s.Client != rest[0] || s.Filter != rest[1] {
			return errors.Join(err, errMismatch)
		}
		st.Subscriptions = append(st.Subscriptions, s)
	case famInflight, famRetained:
		var m Message
		if err := kv.Unmarshal(val, &m); err != nil || !m.matches(fam, rest) {
			return errors.Join(err, errMismatch)
		}
		if fam == famRetained {
			st.Retained = append(st.Retained, m)
		} else {
			st.Inflight = append(st.Inflight, m)
		}
	}
	return nil
}

var errMismatch = errors.New("mqttstate: record does not match its key")

func (m *Message) matches(fam byte, rest []string) bool {
	if fam == famRetained {
		return m.Topic == rest[0] && m.Client == ""
	}
	return m.Client == rest[0] && fmt.Sprint(m.PacketID) == rest[1]
}

// splitKey returns the family of an MQTT state key and its names: the
// client id (and the filter, or the packet id in decimal), or the topic.
func splitKey(key []byte) (byte, []string, error) {
	if len(key) < 3 || key[0] != kv.PrefixMQTT {
		return 0, nil, fmt.Errorf("key %q: not an MQTT state key", key)
	}
	fam, body := key[1], key[2:]
	if fam == famRetained {
		return fam, []string{string(body)}, nil
	}
	id, tail, ok := bytes.Cut(body, []byte{0})
	if !ok || len(id) == 0 {
		return 0, nil, fmt.Errorf("key %q: no client id", key)
	}
	switch fam {
	case famClient:
		if len(tail) == 0 {
			return fam, []string{string(id)}, nil
		}
	case famSub:
		if len(tail) > 0 {
			return fam, []string{string(id), string(tail)}, nil
		}
	case famInflight:
		if len(tail) == 2 {
			return fam, []string{string(id), fmt.Sprint(binary.BigEndian.Uint16(tail))}, nil
		}
	}
	return 0, nil, fmt.Errorf("key %q: unknown layout", key)
}
