package query

import (
	"fmt"
	"testing"
)

// BenchmarkRun100k: one page of 100 and a COUNT over 100 000 twins, a
// tenth of them matching.
func BenchmarkRun100k(b *testing.B) {
	s := store{}
	for i := range 100_000 {
		id := fmt.Sprintf("dev-%06d", i)
		x := "n"
		if i%5 == 0 {
			x = "y"
		}
		s[id] = map[string]any{
			"deviceId": id, "status": "enabled",
			"tags":       map[string]any{"x": x, "location": map[string]any{"region": "US"}},
			"properties": map[string]any{"reported": map[string]any{"t": float64(i % 40)}, "desired": map[string]any{}},
		}
	}
	type entry struct {
		key string
		doc map[string]any
	}
	var entries []entry // a slice, so the benchmark measures the query, not a map walk
	for k, d := range s.all() {
		entries = append(entries, entry{k, d})
	}
	docs := func(yield func(string, map[string]any) bool) {
		for _, e := range entries {
			if !yield(e.key, e.doc) {
				return
			}
		}
	}
	const where = " FROM devices WHERE tags.x = 'y' AND properties.reported.t > 20"
	for _, bc := range []struct{ name, sql string }{
		{"page100", "SELECT *" + where},
		{"count", "SELECT COUNT() AS n" + where},
		{"page100-sparse", "SELECT *" + where + " AND status = 'disabled' OR deviceId = 'dev-099999'"},
	} {
		q, err := Parse(bc.sql)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res, err := q.Run(docs, Page{Max: 100})
				if err != nil || len(res.Items) == 0 {
					b.Fatal(err, len(res.Items))
				}
			}
		})
	}
}
