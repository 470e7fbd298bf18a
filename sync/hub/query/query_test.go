package query

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func collections(t *testing.T) map[Source]store {
	return map[Source]store{
		Devices: keyed(decodeDocs(t, twinsJSON), "deviceId"),
		Modules: keyed(decodeDocs(t, modulesJSON), "deviceId", "moduleId"),
		Jobs:    keyed(decodeDocs(t, jobsJSON), "jobId"),
	}
}

// TestRun runs each query over the twins (or modules, or jobs). ids lists
// the deviceIds of the result (SELECT * queries); want is the exact JSON.
func TestRun(t *testing.T) {
	const all = "dev-a dev-b dev-c dev-d dev-e edge-1 edge-2 sensor-9"
	const w = "SELECT * FROM devices WHERE "
	tests := []struct {
		sql  string
		ids  string
		want string
	}{
		{sql: "SELECT * FROM devices", ids: all},
		{sql: w + "tags.environment = 'prod'", ids: "dev-a dev-b edge-1 edge-2"},
		{sql: "select * from DEVICES where tags.location.region = 'US'", ids: "dev-a dev-c edge-1"},
		// Numbers compare as numbers whatever their representation; a
		// string "22" or null is not a number: undefined, no match.
		{sql: w + "properties.reported.t > 20", ids: "dev-a dev-c edge-2"},
		{sql: w + "properties.reported.t >= 20", ids: "dev-a dev-c edge-1 edge-2"},
		{sql: w + "properties.reported.t < 20", ids: "dev-b sensor-9"},
		{sql: w + "properties.reported.t <= -5", ids: "sensor-9"},
		{sql: w + "properties.reported.t = 18.5", ids: "dev-b"},
		{sql: w + "properties.reported.t != 25", ids: "dev-b dev-c edge-1 edge-2 sensor-9"},
		{sql: w + "properties.reported.t <> 25", ids: "dev-b dev-c edge-1 edge-2 sensor-9"},
		{sql: w + "properties.reported.t = '22'", ids: "dev-d"},
		{sql: w + "properties.reported.t = null", ids: "dev-e"},
		{sql: w + "tags.floor = '3'", ids: ""},
		{sql: w + "tags.location = tags.location", ids: ""}, // objects do not compare
		{sql: w + "deviceId > 'dev-c'", ids: "dev-d dev-e edge-1 edge-2 sensor-9"},
		{sql: w + "tags.environment = 'prod' AND properties.reported.t > 20", ids: "dev-a edge-2"},
		{sql: w + "tags.environment = 'dev' OR tags.location.region = 'EU'", ids: "dev-b dev-c sensor-9"},
		// NOT of undefined is undefined: dev-e has no tags and stays out.
		{sql: w + "NOT (tags.environment = 'prod')", ids: "dev-c dev-d sensor-9"},
		{sql: w + "NOT tags.environment = 'prod'", ids: "dev-c dev-d sensor-9"},
		{sql: w + "tags.environment = 'dev' OR tags.environment = 'prod' AND properties.reported.t > 24", ids: "dev-a dev-c sensor-9"},
		{sql: w + "(tags.environment = 'dev' OR tags.environment = 'prod') AND properties.reported.t > 24", ids: "dev-a dev-c"},
		{sql: w + "properties.reported.t > 20 OR IS_STRING(properties.reported.t)", ids: "dev-a dev-c dev-d edge-2"}, // undefined OR true
		{sql: w + "connectionState = 'Connected' AND status = 'enabled' AND NOT capabilities.iotEdge", ids: "dev-a dev-d dev-e sensor-9"},
		{sql: w + "true", ids: all},
		{sql: w + "false", ids: ""},
		{sql: w + "tags.location.region IN ['US', 'EU']", ids: "dev-a dev-b dev-c edge-1"},
		{sql: w + "tags.location.region NIN ['US']", ids: "dev-b"},
		{sql: w + "properties.reported.t IN [20, 21, '22']", ids: "dev-d edge-1 edge-2"},
		{sql: w + "IS_DEFINED(tags.location)", ids: "dev-a dev-b dev-c edge-1"},
		{sql: w + "NOT IS_DEFINED(tags)", ids: "dev-e"},
		{sql: w + "IS_DEFINED(properties.reported.t)", ids: all}, // null is defined
		{sql: w + "IS_NULL(properties.reported.t)", ids: "dev-e"},
		{sql: w + "IS_NUMBER(properties.reported.t)", ids: "dev-a dev-b dev-c edge-1 edge-2 sensor-9"},
		{sql: w + "IS_STRING(properties.reported.t)", ids: "dev-d"},
		{sql: w + "IS_BOOL(capabilities.iotEdge) AND capabilities.iotEdge = true", ids: "edge-1 edge-2"},
		{sql: w + "IS_OBJECT(tags.location)", ids: "dev-a dev-b dev-c edge-1"},
		{sql: w + "IS_ARRAY(properties.reported.sensors)", ids: "dev-a dev-c"},
		{sql: w + "IS_PRIMITIVE(properties.reported.t)", ids: all},
		{sql: w + "STARTSWITH(deviceId, 'edge-')", ids: "edge-1 edge-2"},
		{sql: w + "EndsWith(deviceId, '-9')", ids: "sensor-9"},
		{sql: w + "CONTAINS(tags.location.plant, 'mond')", ids: "dev-a"},
		{sql: w + "ARRAY_CONTAINS(properties.reported.sensors, 'hum')", ids: "dev-a"},
		{sql: w + "starts_with(properties.reported.firmware, '1.2')", ids: "dev-a"},
		{sql: w + "STARTSWITH(properties.reported.t, '2')", ids: "dev-d"}, // "22"; the numbers 20, 21, 25 are not strings
		{sql: w + "tags['odd key'] = 'x'", ids: "dev-c"},
		{sql: w + "tags.owner = 'O''Brien'", ids: "edge-2"},
		{sql: w + "properties.desired.$version >= 4", ids: "dev-a edge-1"},
		{sql: w + "properties.reported.sensors[1] = 'hum'", ids: "dev-a"},
		{sql: w + "devices.tags.environment = 'test'", ids: "dev-d"},

		{sql: "SELECT deviceId, tags.location.region FROM devices WHERE tags.environment = 'prod'",
			want: `[{"deviceId":"dev-a","region":"US"},{"deviceId":"dev-b","region":"EU"},{"deviceId":"edge-1","region":"US"},{"deviceId":"edge-2"}]`},
		{sql: "SELECT deviceId AS id, properties.reported.telemetryConfig.status AS s FROM devices WHERE STARTSWITH(deviceId, 'dev-') AND IS_DEFINED(properties.reported.telemetryConfig)",
			want: `[{"id":"dev-a","s":"Success"},{"id":"dev-b","s":"Pending"},{"id":"dev-d","s":"Success"}]`},
		{sql: "SELECT deviceId, properties.reported.t FROM devices WHERE properties.reported.t < 0", want: `[{"deviceId":"sensor-9","t":-5}]`},
		{sql: "SELECT tags['odd key'] FROM devices WHERE IS_DEFINED(tags['odd key'])", want: `[{"odd key":"x"}]`},
		{sql: "SELECT properties.reported.sensors[0] FROM devices WHERE IS_ARRAY(properties.reported.sensors)", want: `[{"$1":"temp"},{"$1":"temp"}]`},
		{sql: "SELECT TOP 3 deviceId FROM devices", want: `[{"deviceId":"dev-a"},{"deviceId":"dev-b"},{"deviceId":"dev-c"}]`},
		{sql: "SELECT TOP 2 * FROM devices WHERE capabilities.iotEdge = true", ids: "edge-1 edge-2"},
		{sql: "SELECT TOP 1 * FROM devices WHERE capabilities.iotEdge = true", ids: "edge-1"},
		{sql: "SELECT COUNT() FROM devices", want: `[{"$1":8}]`},
		{sql: "SELECT COUNT() AS n FROM devices WHERE tags.environment = 'prod'", want: `[{"n":4}]`},
		{sql: "SELECT COUNT() AS n FROM devices WHERE tags.environment = 'none'", want: `[{"n":0}]`},
		{sql: "SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices FROM devices GROUP BY properties.reported.telemetryConfig.status",
			want: `[{"numberOfDevices":3},{"status":"Failed","numberOfDevices":1},{"status":"Pending","numberOfDevices":2},{"status":"Success","numberOfDevices":2}]`},
		{sql: "SELECT tags.environment, capabilities.iotEdge, COUNT() AS n FROM devices WHERE IS_DEFINED(tags) GROUP BY tags.environment, capabilities.iotEdge",
			want: `[{"environment":"dev","iotEdge":false,"n":2},{"environment":"prod","iotEdge":false,"n":2},{"environment":"prod","iotEdge":true,"n":2},{"environment":"test","iotEdge":false,"n":1}]`},
		{sql: "SELECT TOP 2 tags.environment AS env, COUNT() AS n FROM devices GROUP BY tags.environment", want: `[{"n":1},{"env":"dev","n":2}]`},
		{sql: "SELECT status FROM devices GROUP BY status", want: `[{"status":"disabled"},{"status":"enabled"}]`},
		{sql: "SELECT properties.reported.t AS t, COUNT() AS n FROM devices WHERE properties.reported.t > 20 GROUP BY properties.reported.t",
			want: `[{"t":21,"n":1},{"t":25,"n":1},{"t":31,"n":1}]`}, // numbers sort as numbers, json.Number or not

		{sql: "SELECT deviceId, moduleId FROM devices.modules WHERE properties.reported.status = 'running'",
			want: `[{"deviceId":"edge-1","moduleId":"$edgeAgent"},{"deviceId":"edge-1","moduleId":"$edgeHub"},{"deviceId":"edge-2","moduleId":"$edgeAgent"}]`},
		{sql: "SELECT moduleId FROM devices.modules WHERE deviceId = 'edge-1' AND STARTSWITH(moduleId, '$')", want: `[{"moduleId":"$edgeAgent"},{"moduleId":"$edgeHub"}]`},
		{sql: "SELECT COUNT() AS n FROM devices.modules WHERE devices.modules.properties.reported.t > 25", want: `[{"n":1}]`},
		{sql: "SELECT jobId, status FROM devices.jobs WHERE devices.jobs.deviceId = 'dev-a' AND devices.jobs.createdDateTimeUtc > '2016-09-01'",
			want: `[{"jobId":"job1","status":"completed"}]`},
	}
	colls := collections(t)
	for _, tt := range tests {
		q, err := Parse(tt.sql)
		if err != nil {
			t.Errorf("%s: %v", tt.sql, err)
			continue
		}
		for _, max := range []int{1000, 1, 3} {
			items := runAll(t, q, colls[q.From()].all(), max)
			if tt.want != "" {
				if !jsonEqual(t, items, tt.want) {
					b, _ := json.Marshal(items)
					t.Errorf("%s (pages of %d):\n got %s\nwant %s", tt.sql, max, b, tt.want)
				}
				continue
			}
			var ids []string
			for _, it := range items {
				ids = append(ids, it["deviceId"].(string))
			}
			if got := strings.Join(ids, " "); got != tt.ids {
				t.Errorf("%s (pages of %d):\n got %s\nwant %s", tt.sql, max, got, tt.ids)
			}
		}
	}
}

func TestStarReturnsTheDoc(t *testing.T) {
	docs := collections(t)[Devices]
	q, _ := Parse("SELECT * FROM devices WHERE deviceId = 'dev-c'")
	res, err := q.Run(docs.all(), Page{})
	if err != nil || len(res.Items) != 1 || !jsonEqual(t, res.Items[0], mustJSON(t, docs["dev-c"])) {
		t.Fatalf("%v %v", res, err)
	}
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAccessors(t *testing.T) {
	q, err := Parse("SELECT TOP 5 deviceId FROM devices.jobs")
	if err != nil {
		t.Fatal(err)
	}
	if q.From() != Jobs || q.Aggregate() || q.Star() || q.Top() != 5 || q.Where() == nil || !q.Where().Match(map[string]any{}) {
		t.Errorf("From %v Aggregate %v Top %d Where %v", q.From(), q.Aggregate(), q.Top(), q.Where())
	}
	if q, err := Parse("select * from devices where x = 1"); err != nil || !q.Star() {
		t.Errorf("SELECT * is not Star: %v", err)
	}
	for sql, agg := range map[string]bool{
		"SELECT COUNT() FROM devices":                    true,
		"SELECT status FROM devices GROUP BY status":     true,
		"SELECT status FROM devices.modules WHERE x = 1": false,
	} {
		if q, err := Parse(sql); err != nil || q.Aggregate() != agg {
			t.Errorf("%s: Aggregate %v, %v", sql, q.Aggregate(), err)
		}
	}
}

func TestString(t *testing.T) {
	tests := map[string]string{
		"select top 3 deviceId as id, count() from Devices.Jobs where not a=1 and (b<>'x''y' or c in [1,-2.5,'z',null,true]) group by deviceId": "SELECT TOP 3 deviceId AS id, COUNT() FROM devices.jobs WHERE NOT a = 1 AND (b <> 'x''y' OR c IN [1, -2.5, 'z', null, true]) GROUP BY deviceId",
		"SELECT * FROM devices WHERE tags['odd key'].x[2] NIN [] AND ((a = 1))":                                                                 "SELECT * FROM devices WHERE tags['odd key'].x[2] NIN [] AND a = 1",
		"SELECT * FROM devices WHERE a = 1 AND (b = 2 AND c = 3)":                                                                               "SELECT * FROM devices WHERE a = 1 AND (b = 2 AND c = 3)",
		"SELECT * FROM devices WHERE is_defined(devices.x) = (NOT starts_with(['from'], 'a'))":                                                  "SELECT * FROM devices WHERE IS_DEFINED(devices.x) = (NOT STARTSWITH(['from'], 'a'))",
	}
	for in, want := range tests {
		q, err := Parse(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got := q.String(); got != want {
			t.Errorf("%s:\n got %s\nwant %s", in, got, want)
		}
	}
}

func TestParseCondition(t *testing.T) {
	docs := collections(t)[Devices]
	tests := []struct {
		cond string
		ids  string
	}{
		{"", "dev-a dev-b dev-c dev-d dev-e edge-1 edge-2 sensor-9"},
		{" * ", "dev-a dev-b dev-c dev-d dev-e edge-1 edge-2 sensor-9"},
		{"tags.environment='prod' AND properties.reported.t > 3", "dev-a dev-b edge-1 edge-2"},
		{"capabilities.iotEdge = true", "edge-1 edge-2"},
		{"deviceId IN ['dev-a', 'sensor-9', 'nope']", "dev-a sensor-9"},
	}
	for _, tt := range tests {
		c, err := ParseCondition(tt.cond)
		if err != nil {
			t.Errorf("%q: %v", tt.cond, err)
			continue
		}
		var ids []string
		for _, d := range docs.all() {
			if c.Match(d) {
				ids = append(ids, d["deviceId"].(string))
			}
		}
		if got := strings.Join(ids, " "); got != tt.ids {
			t.Errorf("%q: got %s, want %s", tt.cond, got, tt.ids)
		}
	}
	var nilCond *Condition
	if !nilCond.Match(nil) || nilCond.String() != "*" {
		t.Error("a nil Condition matches all and reads *")
	}
}

func TestKeys(t *testing.T) {
	tests := []struct {
		cond   string
		values string
		ok     bool
	}{
		{"deviceId = 'a'", "a", true},
		{"'a' = deviceId AND tags.x = 1", "a", true},
		{"tags.x = 1 AND (deviceId IN ['a', 'b', 3] AND status = 'enabled')", "a b", true},
		{"deviceId = 3", "", true},
		{"deviceId = 'a' OR tags.x = 1", "", false},
		{"deviceId NIN ['a']", "", false},
		{"deviceId > 'a'", "", false},
		{"NOT deviceId = 'a'", "", false},
		{"tags.deviceId = 'a'", "", false},
		{"*", "", false},
	}
	for _, tt := range tests {
		c, err := ParseCondition(tt.cond)
		if err != nil {
			t.Fatal(err)
		}
		field, values, ok := c.Keys()
		if ok != tt.ok || strings.Join(values, " ") != tt.values || ok && field != "deviceId" {
			t.Errorf("%q: Keys() = %q %q %v", tt.cond, field, values, ok)
		}
	}
}

func TestContinuationErrors(t *testing.T) {
	docs := collections(t)[Devices]
	q1, _ := Parse("SELECT * FROM devices")
	q2, _ := Parse("SELECT * FROM devices WHERE status = 'enabled'")
	agg, _ := Parse("SELECT status, COUNT() FROM devices GROUP BY status")
	res, err := q1.Run(docs.all(), Page{Max: 2})
	if err != nil || res.Continuation == "" {
		t.Fatal(res, err)
	}
	// The same query written differently keeps its continuation.
	same, _ := Parse("select *   from DEVICES")
	if _, err := same.Run(docs.all(), Page{Max: 2, Continuation: res.Continuation}); err != nil {
		t.Errorf("same query: %v", err)
	}
	if after, err := q1.Resume(res.Continuation); err != nil || after != "dev-b" {
		t.Errorf("Resume = %q, %v", after, err)
	}
	for name, tc := range map[string]struct {
		q   *Query
		tok string
	}{
		"other query":     {q2, res.Continuation},
		"aggregate query": {agg, res.Continuation},
		"garbled":         {q1, res.Continuation[:len(res.Continuation)-3] + "!!!"},
		"not json":        {q1, "bm90IGpzb24"},
		"unknown field":   {q1, base64JSON(t, `{"h":"x","z":1}`)},
	} {
		_, err := tc.q.Run(docs.all(), Page{Continuation: tc.tok})
		if !errors.Is(err, ErrContinuation) || !strings.Contains(err.Error(), "without the x-ms-continuation header") {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := tc.q.Resume(tc.tok); !errors.Is(err, ErrContinuation) {
			t.Errorf("%s: Resume: %v", name, err)
		}
	}
}

func TestDocsOutOfOrder(t *testing.T) {
	q, _ := Parse("SELECT * FROM devices")
	docs := func(yield func(string, map[string]any) bool) {
		_ = yield("b", map[string]any{}) && yield("a", map[string]any{})
	}
	if _, err := q.Run(docs, Page{}); !errors.Is(err, ErrOrder) {
		t.Errorf("got %v, want ErrOrder", err)
	}
}

func TestPageSize(t *testing.T) {
	s := store{}
	for i := range 2500 {
		s[fmt.Sprintf("%05d", i)] = map[string]any{"i": float64(i)}
	}
	q, _ := Parse("SELECT * FROM devices")
	for max, want := range map[int]int{0: DefaultPageSize, -1: DefaultPageSize, 7: 7, 5000: MaxPageSize} {
		res, err := q.Run(s.all(), Page{Max: max})
		if err != nil || len(res.Items) != want || res.Continuation == "" {
			t.Errorf("Max %d: %d items, %q, %v", max, len(res.Items), res.Continuation, err)
		}
	}
}

func base64JSON(t *testing.T, s string) string {
	t.Helper()
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

// TestConcurrentRun: a Query is shared by the hub's request handlers.
func TestConcurrentRun(t *testing.T) {
	docs := collections(t)[Devices]
	q, _ := Parse("SELECT tags.environment, COUNT() AS n FROM devices WHERE properties.reported.t > 0 GROUP BY tags.environment")
	want := runAll(t, q, docs.all(), 2)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			res, err := q.Run(docs.all(), Page{})
			if err != nil || !reflect.DeepEqual(res.Items, want) {
				t.Errorf("got %v, %v; want %v", res.Items, err, want)
			}
		})
	}
	wg.Wait()
}
