package twin

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/kv"
)

// BenchmarkPatchReported measures reported patches applied per second on an
// edge: parse, validate, stamp, apply to the CRDT, commit with its dot index.
func BenchmarkPatchReported(b *testing.B) {
	for _, d := range []kv.Durability{kv.Process, kv.Power} {
		b.Run(d.String(), func(b *testing.B) {
			db, err := kv.Open(b.TempDir(), kv.Options{Durability: d})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			s, err := Open(ctx, db, Options{Role: Edge, Name: "gw"})
			if err != nil {
				b.Fatal(err)
			}
			sess, _ := s.BeginSession()
			start := time.Now()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := s.PatchReported(ctx, "dev1", sess, []byte(reportedPatch(i))); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "patches/s")
		})
	}
}

// BenchmarkDelta10k: 10 000 offline reported patches to one twin, then the
// delta the hub needs: its size against the final state's.
func BenchmarkDelta10k(b *testing.B) {
	for i := 0; i < b.N; i++ {
		clk := &clockT{ms: 1_750_000_000_000}
		edge := openStore(b, openDB(b, ""), Edge, "gw1", clk)
		sess, _ := edge.BeginSession()
		for j := 0; j < 10_000; j++ {
			if _, err := edge.PatchReported(ctx, "dev1", sess, []byte(reportedPatch(j))); err != nil {
				b.Fatal(err)
			}
		}
		start := time.Now()
		batch, _, err := edge.Delta(crdt.VV{}, 1<<20)
		if err != nil {
			b.Fatal(err)
		}
		wire, _ := batch.MarshalCBOR()
		elapsed := time.Since(start)
		v, _ := edge.Get("dev1")
		state, _ := json.Marshal(v.Reported)
		b.ReportMetric(float64(len(state)), "state-B")
		b.ReportMetric(float64(len(wire)), "delta-cbor-B")
		b.ReportMetric(float64(deflate(b, wire)), "delta-deflated-B")
		b.ReportMetric(float64(deflate(b, wire))/float64(len(state)), "deflated/state")
		b.ReportMetric(float64(batch.Fields()), "fields")
		b.ReportMetric(float64(elapsed.Microseconds()), "delta-µs")
	}
}

// BenchmarkPatchDesired measures the hub's desired patches per second on
// its own and Replicated (the raft state machine's mode: the exact HLC
// and dot sequence written with every change).
func BenchmarkPatchDesired(b *testing.B) {
	for _, replicated := range []bool{false, true} {
		name := map[bool]string{false: "alone", true: "replicated"}[replicated]
		b.Run(name, func(b *testing.B) {
			db, err := kv.Open(b.TempDir(), kv.Options{Durability: kv.Process})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			s, err := Open(ctx, db, Options{Role: Cloud, Name: "hub", Replicated: replicated, Incarnation: "c1"})
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := s.PatchDesired(ctx, "dev1", []byte(reportedPatch(i))); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "patches/s")
		})
	}
}
