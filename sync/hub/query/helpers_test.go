package query

import (
	"encoding/json"
	"iter"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// twins are device twins shaped like IoT Hub's; every other one is decoded
// with json.Number so both number representations are exercised.
const twinsJSON = `[
{"deviceId":"dev-a","status":"enabled","connectionState":"Connected",
 "tags":{"environment":"prod","location":{"region":"US","plant":"Redmond43"},"floor":3},
 "properties":{"desired":{"telemetryConfig":{"sendFrequency":"5m"},"$version":4},
   "reported":{"telemetryConfig":{"status":"Success"},"t":25,"firmware":"1.2.0","sensors":["temp","hum"],"$version":7}},
 "capabilities":{"iotEdge":false}},
{"deviceId":"dev-b","status":"enabled","connectionState":"Disconnected",
 "tags":{"environment":"prod","location":{"region":"EU"}},
 "properties":{"desired":{"$version":2},"reported":{"telemetryConfig":{"status":"Pending"},"t":18.5,"firmware":"1.1.9","$version":3}},
 "capabilities":{"iotEdge":false}},
{"deviceId":"dev-c","status":"disabled","connectionState":"Disconnected",
 "tags":{"environment":"dev","location":{"region":"US"},"odd key":"x"},
 "properties":{"desired":{"$version":1},"reported":{"t":31,"sensors":["temp"],"$version":1}},
 "capabilities":{"iotEdge":false}},
{"deviceId":"dev-d","status":"enabled","connectionState":"Connected",
 "tags":{"environment":"test"},
 "properties":{"desired":{"$version":1},"reported":{"telemetryConfig":{"status":"Success"},"t":"22","$version":2}},
 "capabilities":{"iotEdge":false}},
{"deviceId":"dev-e","status":"enabled","connectionState":"Connected",
 "properties":{"desired":{"$version":1},"reported":{"t":null,"$version":1}},
 "capabilities":{"iotEdge":false}},
{"deviceId":"edge-1","status":"enabled","connectionState":"Connected",
 "tags":{"environment":"prod","location":{"region":"US"}},
 "properties":{"desired":{"$version":5},"reported":{"telemetryConfig":{"status":"Failed"},"t":20,"$version":9}},
 "capabilities":{"iotEdge":true}},
{"deviceId":"edge-2","status":"enabled","connectionState":"Disconnected",
 "tags":{"environment":"prod","owner":"O'Brien"},
 "properties":{"desired":{"$version":1},"reported":{"t":21,"$version":4}},
 "capabilities":{"iotEdge":true}},
{"deviceId":"sensor-9","status":"enabled","connectionState":"Connected",
 "tags":{"environment":"dev"},
 "properties":{"desired":{"$version":1},"reported":{"telemetryConfig":{"status":"Pending"},"t":-5,"$version":2}},
 "capabilities":{"iotEdge":false}}
]`

const modulesJSON = `[
{"deviceId":"edge-1","moduleId":"$edgeAgent","properties":{"reported":{"status":"running"}}},
{"deviceId":"edge-1","moduleId":"$edgeHub","properties":{"reported":{"status":"running"}}},
{"deviceId":"edge-1","moduleId":"tempSensor","properties":{"reported":{"status":"stopped","t":30}}},
{"deviceId":"edge-2","moduleId":"$edgeAgent","properties":{"reported":{"status":"running"}}}
]`

const jobsJSON = `[
{"jobId":"job1","deviceId":"dev-a","jobType":"scheduleUpdateTwin","status":"completed","createdDateTimeUtc":"2016-09-29T18:18:56Z"},
{"jobId":"job2","deviceId":"dev-b","jobType":"scheduleDeviceMethod","status":"failed","createdDateTimeUtc":"2016-08-01T00:00:00Z"}
]`

// decodeDocs decodes a JSON array of objects, every other one with UseNumber.
func decodeDocs(t testing.TB, text string) []map[string]any {
	t.Helper()
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(text), &raw); err != nil {
		t.Fatal(err)
	}
	out := make([]map[string]any, len(raw))
	for i, r := range raw {
		dec := json.NewDecoder(strings.NewReader(string(r)))
		if i%2 == 1 {
			dec.UseNumber()
		}
		if err := dec.Decode(&out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// store is a set of docs by key, yielded in key order.
type store map[string]map[string]any

func (s store) all() iter.Seq2[string, map[string]any] {
	return func(yield func(string, map[string]any) bool) {
		for _, k := range slices.Sorted(maps.Keys(s)) {
			if !yield(k, s[k]) {
				return
			}
		}
	}
}

func keyed(docs []map[string]any, fields ...string) store {
	s := store{}
	for _, d := range docs {
		var parts []string
		for _, f := range fields {
			parts = append(parts, d[f].(string))
		}
		s[strings.Join(parts, "/")] = d
	}
	return s
}

// normJSON re-encodes v so that JSON-equal values compare equal.
func normJSON(t testing.TB, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func jsonEqual(t testing.TB, got any, want string) bool {
	t.Helper()
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want %s: %v", want, err)
	}
	return reflect.DeepEqual(normJSON(t, got), w)
}

// fataler is what runAll needs of a *testing.T or *rapid.T.
type fataler interface {
	Helper()
	Fatal(args ...any)
}

// runAll pages through a query with page size max and returns all items.
func runAll(t fataler, q *Query, docs iter.Seq2[string, map[string]any], max int) []map[string]any {
	t.Helper()
	all := []map[string]any{}
	page := Page{Max: max}
	for i := 0; ; i++ {
		if i > 10000 {
			t.Fatal("paging does not end")
		}
		res, err := q.Run(docs, page)
		if err != nil {
			t.Fatal(err)
		}
		if res.Items == nil {
			t.Fatal("nil Items")
		}
		all = append(all, res.Items...)
		if res.Continuation == "" {
			return all
		}
		if len(res.Items) == 0 {
			t.Fatal("an empty page with a continuation")
		}
		page.Continuation = res.Continuation
	}
}
