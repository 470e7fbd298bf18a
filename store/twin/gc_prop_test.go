package twin

import (
	"reflect"
	"testing"

	"pgregory.net/rapid"

	"github.com/outpost-edge/outpost/store/kv"
)

// pair is an edge and a hub replica of one twin.
type pair struct{ edge, hub *Store }

func openPair(rt *rapid.T) (pair, func()) {
	var dbs []*kv.DB
	open := func(role Role, name string) *Store {
		db, err := kv.Open("", kv.Options{InMemory: true})
		if err != nil {
			rt.Fatal(err)
		}
		dbs = append(dbs, db)
		clk := &clockT{ms: 1_750_000_000_000}
		s, err := Open(ctx, db, Options{Role: role, Name: name, Now: clk.now})
		if err != nil {
			rt.Fatal(err)
		}
		return s
	}
	p := pair{edge: open(Edge, "gw1"), hub: open(Cloud, "hub")}
	return p, func() {
		for _, db := range dbs {
			db.Close()
		}
	}
}

// sync moves at most size fields from one side to the other; it returns
// the batch for a later stale replay.
func (p pair) sync(rt *rapid.T, toHub bool, size int) Batch {
	from, to := p.edge, p.hub
	if !toHub {
		from, to = p.hub, p.edge
	}
	b, _, err := from.Delta(to.VV(), size)
	if err != nil {
		rt.Fatal(err)
	}
	if _, err := to.ApplyDelta(ctx, b); err != nil {
		rt.Fatal(err)
	}
	return b
}

func (p pair) full(rt *rapid.T) {
	for range 100 {
		p.sync(rt, true, 1000)
		p.sync(rt, false, 1000)
	}
}

func rendered(rt *rapid.T, s *Store) [2]map[string]any {
	v, err := s.Get("d")
	if err != nil {
		return [2]map[string]any{}
	}
	return [2]map[string]any{v.Desired, v.Reported}
}

// TestPropStableGC: with the link's acks and GC (pair a) and without any
// GC (pair b), the same edits, deletes and partial syncs render the same
// twins; GC never changes what a replica renders; a stale batch replayed
// after GC brings no deleted key back; and once both sides have exchanged
// acks, every tombstone is collected.
func TestPropStableGC(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		a, closeA := openPair(rt)
		defer closeA()
		b, closeB := openPair(rt)
		defer closeB()
		sessA, _ := a.edge.BeginSession()
		sessB, _ := b.edge.BeginSession()
		var stale []struct {
			toHub bool
			b     Batch
		}
		for range rapid.IntRange(1, 40).Draw(rt, "steps") {
			switch rapid.IntRange(0, 5).Draw(rt, "op") {
			case 0:
				patch := []byte(genPatch(rt))
				_, errA := a.hub.PatchDesired(ctx, "d", patch)
				_, errB := b.hub.PatchDesired(ctx, "d", patch)
				if (errA == nil) != (errB == nil) {
					rt.Fatalf("desired patch %s: %v / %v", patch, errA, errB)
				}
			case 1:
				patch := []byte(genPatch(rt))
				_, errA := a.edge.PatchReported(ctx, "d", sessA, patch)
				_, errB := b.edge.PatchReported(ctx, "d", sessB, patch)
				if (errA == nil) != (errB == nil) {
					rt.Fatalf("reported patch %s: %v / %v", patch, errA, errB)
				}
			case 2:
				toHub := rapid.Bool().Draw(rt, "toHub")
				size := rapid.IntRange(1, 4).Draw(rt, "size")
				stale = append(stale, struct {
					toHub bool
					b     Batch
				}{toHub, a.sync(rt, toHub, size)})
				b.sync(rt, toHub, size)
			case 3: // the link's acks: Welcome/TwinsAck/Push at the edge, Pull at the hub
				if rapid.Bool().Draw(rt, "ackAtEdge") {
					a.edge.Ack(ctx, "hub", a.hub.Replica(), a.hub.VV())
				} else {
					a.hub.Ack(ctx, "gw1", a.edge.Replica(), a.edge.VV())
				}
			case 4:
				s, member := a.edge, "hub"
				if rapid.Bool().Draw(rt, "gcAtHub") {
					s, member = a.hub, "gw1"
				}
				before := rendered(rt, s)
				if _, err := s.GC(ctx, func(string) []string { return []string{member} }, 8); err != nil {
					rt.Fatal(err)
				}
				if after := rendered(rt, s); !reflect.DeepEqual(before, after) {
					rt.Fatalf("GC at %s changed the twin\nbefore %v\nafter  %v", s.Replica(), before, after)
				}
			case 5:
				if len(stale) > 0 {
					r := stale[rapid.IntRange(0, len(stale)-1).Draw(rt, "stale")]
					to := a.edge
					if r.toHub {
						to = a.hub
					}
					before := rendered(rt, to)
					if _, err := to.ApplyDelta(ctx, r.b); err != nil {
						rt.Fatal(err)
					}
					if after := rendered(rt, to); !reflect.DeepEqual(before, after) {
						rt.Fatalf("a stale batch changed %s\nbefore %v\nafter  %v", to.Replica(), before, after)
					}
				}
			}
		}
		a.full(rt)
		b.full(rt)
		for _, s := range [][2]*Store{{a.edge, b.edge}, {a.hub, b.hub}, {a.edge, a.hub}} {
			if x, y := rendered(rt, s[0]), rendered(rt, s[1]); !reflect.DeepEqual(x, y) {
				rt.Fatalf("%s and %s differ after a full sync\n%v\n%v", s[0].Replica(), s[1].Replica(), x, y)
			}
		}
		for range 2 { // liveness: acks both ways, then GC, collect everything
			acks(rt, a.edge, a.hub)
			a.edge.GC(ctx, onlyHub, 8)
			a.hub.GC(ctx, onlyEdge, 8)
		}
		for _, s := range []*Store{a.edge, a.hub} {
			if n, _ := s.Tombstones("d"); n != 0 {
				rt.Fatalf("%s keeps %d tombstones after every ack", s.Replica(), n)
			}
		}
	})
}
