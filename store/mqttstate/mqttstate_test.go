package mqttstate

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/outpost-edge/outpost/store/kv"
)

func openDB(t *testing.T, dir string) *kv.DB {
	t.Helper()
	db, err := kv.Open(dir, kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func commit(t *testing.T, db *kv.DB, ops ...kv.Op) {
	t.Helper()
	if err := db.Commit(context.Background(), ops...); err != nil {
		t.Fatal(err)
	}
}

// must returns op, failing t on err.
func must(t *testing.T) func(kv.Op, error) kv.Op {
	return func(op kv.Op, err error) kv.Op {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return op
	}
}

// What is written is read back after the database is reopened, and a
// session's deletes take its record, subscriptions and messages and
// nothing of another client whose id extends it.
func TestRoundTripAndDeleteSession(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	ok := must(t)
	c := Client{ID: "c1", Account: "acct", Protocol: 5, SessionExpiry: 60, SessionExpiryFlag: true,
		Will: &Will{Topic: "w", Payload: []byte("gone"), Qos: 1, User: []Property{{"k", "v"}}}}
	other := Client{ID: "c10", Protocol: 4}
	sub := Subscription{Client: "c1", Filter: "a/+/c", Qos: 1, Identifier: 7}
	msg := Message{Client: "c1", PacketID: 513, Origin: "p", Type: 3, Qos: 1, Topic: "a/b/c", Payload: []byte("x"),
		Created: 100, Expiry: 200, Protocol: 5, Props: Props{ContentType: "text/plain", User: []Property{{"a", "b"}}}}
	ret := Message{Topic: "a/b", Retain: true, Type: 3, Payload: []byte("r")}
	commit(t, db, ok(PutClient(c)), ok(PutClient(other)), ok(PutSubscription(sub)),
		ok(PutSubscription(Subscription{Client: "c10", Filter: "z"})),
		ok(PutInflight(msg)), ok(PutRetained(ret)))
	db.Close()
	db = openDB(t, dir)
	defer db.Close()
	st, err := Load(db)
	if err != nil {
		t.Fatal(err)
	}
	want := &State{Clients: []Client{c, other}, Subscriptions: []Subscription{sub, {Client: "c10", Filter: "z"}},
		Inflight: []Message{msg}, Retained: []Message{ret}}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("loaded\n%+v\nwant\n%+v", st, want)
	}
	ops, err := DeleteSession(db, "c1")
	if err != nil {
		t.Fatal(err)
	}
	commit(t, db, ops...)
	st, _ = Load(db)
	want = &State{Clients: []Client{other}, Subscriptions: []Subscription{{Client: "c10", Filter: "z"}}, Retained: []Message{ret}}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("after DeleteSession(c1)\n%+v\nwant\n%+v", st, want)
	}
	commit(t, db, DeleteRetained("a/b"), DeleteClient("c10"), DeleteSubscription("c10", "z"))
	if st, _ = Load(db); !reflect.DeepEqual(st, &State{}) {
		t.Fatalf("after deleting everything: %+v", st)
	}
}

func TestInvalidNamesRefused(t *testing.T) {
	for name, err := range map[string]error{
		"empty client":  func() error { _, err := PutClient(Client{}); return err }(),
		"0 in id":       func() error { _, err := PutClient(Client{ID: "a\x00b"}); return err }(),
		"0 in filter":   func() error { _, err := PutSubscription(Subscription{Client: "a", Filter: "x\x00"}); return err }(),
		"empty topic":   func() error { _, err := PutRetained(Message{}); return err }(),
		"inflight no c": func() error { _, err := PutInflight(Message{PacketID: 1}); return err }(),
	} {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

// A record that does not decode, or does not match its key, is not
// loaded: it is reported for deletion.
func TestBadRecordsReported(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	ok := must(t)
	good := ok(PutClient(Client{ID: "ok"}))
	moved := ok(PutClient(Client{ID: "x"}))
	moved.Key = clientKey(famClient, "y")
	garbage := kv.Set(clientKey(famSub, "c"), []byte{0xff})
	commit(t, db, good, moved, garbage, kv.Set([]byte{kv.PrefixMQTT, 'z', 1}, []byte{0}))
	st, err := Load(db)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Clients) != 1 || st.Clients[0].ID != "ok" || len(st.Bad) != 3 {
		t.Fatalf("loaded %+v with %d bad, want client ok and 3 bad", st.Clients, len(st.Bad))
	}
}
