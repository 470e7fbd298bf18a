package twin

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/kv"
)

// replicatedStore is a Replicated cloud store on db with the clock now.
func replicatedStore(t *testing.T, db *kv.DB, now func() int64) *Store {
	t.Helper()
	s, err := Open(ctx, db, Options{Role: Cloud, Name: "hub", Now: now, Replicated: true, Incarnation: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func dumpDB(t *testing.T, db *kv.DB) string {
	t.Helper()
	var out bytes.Buffer
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out.WriteString(string(it.Item().Key()) + "=" + string(v) + "\n")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// Two Replicated stores given the same writes at the same times, one of
// them re-opened after every write, hold the same keys: the replica id is
// fixed, and the HLC and dot sequence continue exactly (no reservation
// ahead), also after a refused write and with a clock that steps back.
func TestReplicatedReopenContinuesExactly(t *testing.T) {
	var at int64 = 1_750_000_000_000
	now := func() int64 { return at }
	dirB := t.TempDir()
	dbA, dbB := openDB(t, t.TempDir()), openDB(t, dirB)
	a, b := replicatedStore(t, dbA, now), replicatedStore(t, dbB, now)
	if a.Replica() != "hub.hub.c1" || b.Replica() != a.Replica() {
		t.Fatalf("replica ids %s and %s, want hub.hub.c1", a.Replica(), b.Replica())
	}
	big := `{"x":"` + strings.Repeat("z", 4000) + `"`
	for i := range 9 {
		big += `,"k` + string(rune('0'+i)) + `":"` + strings.Repeat("z", 4000) + `"`
	}
	big += "}"
	writes := []struct {
		step  int64
		patch string
	}{{5, `{"a":1}`}, {0, `{"a":2}`}, {-3000, `{"b":{"c":1}}`}, {10, big}, {-1, `{"b":null}`}, {20_000, `{"a":null}`}}
	for i, w := range writes {
		at += w.step
		_, errA := a.PatchDesired(ctx, "dev1", []byte(w.patch))
		_, errB := b.PatchDesired(ctx, "dev1", []byte(w.patch))
		if (errA == nil) != (errB == nil) || errA != nil && !errors.Is(errA, ErrTooLarge) {
			t.Fatalf("write %d: %v straight through, %v re-opened", i, errA, errB)
		}
		dbB.Close()
		dbB = openDB(t, dirB)
		b = replicatedStore(t, dbB, now)
	}
	if da, db := dumpDB(t, dbA), dumpDB(t, dbB); da != db {
		t.Fatalf("the stores differ:\n%s\n----\n%s", da, db)
	}
}

// A store that ran alone keeps its twins when it becomes Replicated, under
// the fixed incarnation; Open refuses a Replicated store without one.
func TestReplicatedFromAlone(t *testing.T) {
	clk := &clockT{ms: 1_750_000_000_000}
	db := openDB(t, "")
	alone := openStore(t, db, Cloud, "hub", clk)
	if _, err := alone.PatchDesired(ctx, "dev1", []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, db, Options{Role: Cloud, Name: "hub", Replicated: true}); err == nil {
		t.Fatal("a Replicated store without an incarnation opened")
	}
	s := replicatedStore(t, db, clk.now)
	if s.Replica() != "hub.hub.c1" {
		t.Fatalf("replica %s, want hub.hub.c1", s.Replica())
	}
	if _, err := s.PatchDesired(ctx, "dev1", []byte(`{"b":2}`)); err != nil {
		t.Fatal(err)
	}
	v, err := s.Get("dev1")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(v.ServiceJSON()); !strings.Contains(got, `"a":1`) || !strings.Contains(got, `"b":2`) {
		t.Fatalf("twin %s, want a and b", got)
	}
	if vv := s.VV(); vv[alone.Replica()] != 1 || vv[s.Replica()] != 1 {
		t.Fatalf("version vector %v, want the old and the new incarnation's write", vv)
	}
}

// BeginSession, which would issue a stamp outside any change, is refused
// by a Replicated store and leaves its stamps where they were.
func TestReplicatedRefusesBeginSession(t *testing.T) {
	s := replicatedStore(t, openDB(t, t.TempDir()), func() int64 { return 1_750_000_000_000 })
	before := s.currentStamps()
	if _, err := s.BeginSession(); !errors.Is(err, errReplicatedSession) {
		t.Fatalf("BeginSession on a replicated store: %v, want errReplicatedSession", err)
	}
	if after := s.currentStamps(); after != before {
		t.Fatalf("stamps moved from %+v to %+v", before, after)
	}
}
