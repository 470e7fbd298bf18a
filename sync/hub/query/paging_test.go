package query

import (
	"fmt"
	"reflect"
	"testing"

	"pgregory.net/rapid"
)

// pagingQueries cover scans, projections, TOP and aggregates.
var pagingQueries = []string{
	"SELECT * FROM devices",
	"SELECT * FROM devices WHERE tags.env = 'prod'",
	"SELECT deviceId, properties.reported.t FROM devices WHERE properties.reported.t > 3",
	"SELECT TOP 5 * FROM devices WHERE tags.env IN ['prod', 'dev']",
	"SELECT TOP 1 deviceId FROM devices",
	"SELECT COUNT() AS n FROM devices WHERE NOT tags.env = 'dev'",
	"SELECT tags.env, COUNT() AS n FROM devices GROUP BY tags.env",
	"SELECT TOP 3 tags.env, properties.reported.t AS t, COUNT() FROM devices GROUP BY tags.env, properties.reported.t",
}

// genDoc draws a small twin; its fields may be missing or of odd types.
func genDoc(t *rapid.T, id string) map[string]any {
	doc := map[string]any{"deviceId": id}
	if env := rapid.SampledFrom([]string{"prod", "dev", "test", ""}).Draw(t, "env"); env != "" {
		doc["tags"] = map[string]any{"env": env}
	}
	switch rapid.IntRange(0, 3).Draw(t, "tkind") {
	case 0:
		doc["properties"] = map[string]any{"reported": map[string]any{"t": float64(rapid.IntRange(0, 6).Draw(t, "t"))}}
	case 1:
		doc["properties"] = map[string]any{"reported": map[string]any{"t": "5"}}
	}
	return doc
}

func genStore(t *rapid.T) store {
	s := store{}
	for range rapid.IntRange(0, 40).Draw(t, "n") {
		id := fmt.Sprintf("d%02d", rapid.IntRange(0, 60).Draw(t, "id"))
		s[id] = genDoc(t, id)
	}
	return s
}

// TestPagingIsUnpaged: paging any query with any page size gives exactly
// the result of one big page.
func TestPagingIsUnpaged(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := genStore(t)
		q, err := Parse(rapid.SampledFrom(pagingQueries).Draw(t, "query"))
		if err != nil {
			t.Fatal(err)
		}
		whole, err := q.Run(s.all(), Page{Max: MaxPageSize})
		if err != nil || whole.Continuation != "" {
			t.Fatalf("one page: %v %q", err, whole.Continuation)
		}
		paged := runAll(t, q, s.all(), rapid.IntRange(1, 7).Draw(t, "max"))
		if !reflect.DeepEqual(paged, whole.Items) {
			t.Fatalf("paged %v\nwhole %v", paged, whole.Items)
		}
	})
}

// TestPagingUnderChange: with docs added, removed and changed between
// pages, every doc that stayed unchanged and matches is returned exactly
// once, and no doc is returned twice.
func TestPagingUnderChange(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := genStore(t)
		q, err := Parse(rapid.SampledFrom([]string{
			"SELECT deviceId FROM devices",
			"SELECT deviceId FROM devices WHERE tags.env = 'prod'",
			"SELECT deviceId FROM devices WHERE properties.reported.t >= 2 OR NOT IS_DEFINED(tags)",
		}).Draw(t, "query"))
		if err != nil {
			t.Fatal(err)
		}
		touched := map[string]bool{} // added, removed or changed at some point
		original := store{}
		for k, v := range s {
			original[k] = v
		}
		seen := map[string]int{}
		page := Page{Max: rapid.IntRange(1, 5).Draw(t, "max")}
		for i := 0; ; i++ {
			if i > 200 {
				t.Fatal("paging does not end")
			}
			res, err := q.Run(s.all(), page)
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range res.Items {
				seen[it["deviceId"].(string)]++
			}
			if res.Continuation == "" {
				break
			}
			page.Continuation = res.Continuation
			for range rapid.IntRange(0, 4).Draw(t, "changes") {
				id := fmt.Sprintf("d%02d", rapid.IntRange(0, 60).Draw(t, "cid"))
				touched[id] = true
				if rapid.Bool().Draw(t, "delete") {
					delete(s, id)
				} else {
					s[id] = genDoc(t, id)
				}
			}
		}
		for id, n := range seen {
			if n > 1 {
				t.Fatalf("%s returned %d times", id, n)
			}
		}
		for id, doc := range original {
			if !touched[id] && q.Where().Match(doc) && seen[id] != 1 {
				t.Fatalf("unchanged %s returned %d times", id, seen[id])
			}
		}
	})
}
