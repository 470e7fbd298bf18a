package mqttstate

import (
	"reflect"
	"testing"

	"github.com/outpost-edge/outpost/store/kv"
)

// Any key and value either decode to a record that encodes back under the
// same key, or are refused; nothing panics.
func FuzzRecord(f *testing.F) {
	seed := func(op kv.Op, err error) {
		if err == nil {
			f.Add(op.Key, op.Value)
		}
	}
	seed(PutClient(Client{ID: "c", Will: &Will{Topic: "t"}}))
	seed(PutSubscription(Subscription{Client: "c", Filter: "a/#"}))
	seed(PutInflight(Message{Client: "c", PacketID: 9, Topic: "t", Payload: []byte("p")}))
	seed(PutRetained(Message{Topic: "t/u", Retain: true}))
	f.Add([]byte{kv.PrefixMQTT, famInflight, 'c', 0, 1}, []byte{0xa0})
	f.Fuzz(func(t *testing.T, key, val []byte) {
		var st State
		if err := st.add(key, val); err != nil {
			if !reflect.DeepEqual(st, State{}) {
				t.Fatalf("a refused record changed the state: %+v", st)
			}
			return
		}
		var op kv.Op
		var err error
		switch {
		case len(st.Clients) == 1:
			op, err = PutClient(st.Clients[0])
		case len(st.Subscriptions) == 1:
			op, err = PutSubscription(st.Subscriptions[0])
		case len(st.Inflight) == 1:
			op, err = PutInflight(st.Inflight[0])
		case len(st.Retained) == 1:
			op, err = PutRetained(st.Retained[0])
		default:
			t.Fatalf("accepted %q but loaded nothing", key)
		}
		if err != nil {
			t.Fatalf("accepted record of %q cannot be written back: %v", key, err)
		}
		if string(op.Key) != string(key) {
			t.Fatalf("record of key %q writes back under %q", key, op.Key)
		}
	})
}
