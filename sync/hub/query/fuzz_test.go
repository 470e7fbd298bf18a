package query

import (
	"encoding/json"
	"reflect"
	"testing"
)

// seedQueries are drawn from the table tests, plus edge cases.
var seedQueries = []string{
	"SELECT * FROM devices",
	"select top 3 deviceId as id, count() from Devices.Jobs where not a=1 and (b<>'x''y' or c in [1,-2.5,'z',null,true]) group by deviceId",
	"SELECT * FROM devices WHERE tags['odd key'].x[2] NIN [] AND ((a = 1))",
	"SELECT * FROM devices WHERE is_defined(devices.x) = (NOT starts_with(['from'], 'a'))",
	"SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices FROM devices GROUP BY properties.reported.telemetryConfig.status",
	"SELECT deviceId, moduleId FROM devices.modules WHERE properties.reported.status = 'running'",
	"SELECT jobId FROM devices.jobs WHERE devices.jobs.deviceId = 'dev-a' AND devices.jobs.createdDateTimeUtc > '2016-09-01'",
	"SELECT * FROM devices WHERE ARRAY_CONTAINS(properties.reported.sensors, 'hum') OR ENDSWITH(deviceId, '-9')",
	"SELECT * FROM devices WHERE properties.desired.$version >= 4e0 AND IS_PRIMITIVE(properties.reported.t)",
	"SELECT * FROM devices WHERE devices.devices.x = 1 AND ['devices'].y = 2",
	"SELECT TOP 2 * FROM devices WHERE capabilities.iotEdge = true",
	"SELECT * devices",
	"SELECT * FROM devices WHERE tags.x = 'abc",
}

// fuzzDocs is a small doc set for evaluating fuzzed queries.
func fuzzDocs(t testing.TB) store {
	s := keyed(decodeDocs(t, twinsJSON), "deviceId")
	for k, v := range keyed(decodeDocs(t, modulesJSON), "deviceId", "moduleId") {
		s[k] = v
	}
	return s
}

func FuzzParse(f *testing.F) {
	for _, s := range seedQueries {
		f.Add(s)
	}
	docs := fuzzDocs(f)
	f.Fuzz(func(t *testing.T, sql string) {
		q, err := Parse(sql)
		if err != nil {
			if _, ok := err.(*Error); !ok || q != nil {
				t.Fatalf("want a nil query and an *Error, got %v, %T", q, err)
			}
			return
		}
		canon := q.String()
		q2, err := Parse(canon)
		if err != nil {
			t.Fatalf("canonical form of %q does not parse: %q: %v", sql, canon, err)
		}
		if again := q2.String(); again != canon {
			t.Fatalf("not a fixed point:\n%q\n%q", canon, again)
		}
		if q.From() != q2.From() || q.Aggregate() != q2.Aggregate() || q.Top() != q2.Top() {
			t.Fatalf("%q and %q differ", sql, canon)
		}
		r1 := runAll(t, q, docs.all(), 3)
		r2 := runAll(t, q2, docs.all(), 1000)
		if !reflect.DeepEqual(r1, r2) {
			t.Fatalf("%q and %q give different results", sql, canon)
		}
		if _, err := json.Marshal(r1); err != nil {
			t.Fatalf("results do not encode: %v", err)
		}
		q.Where().Keys()
	})
}

func FuzzCondition(f *testing.F) {
	for _, s := range []string{
		"", "*", "tags.environment='prod' AND properties.reported.x > 3",
		"deviceId IN ['a', 'b'] AND NOT IS_NULL(tags.x)",
		"(a = 1 OR b <> 'x') AND c.d[0] != -1.5e-3",
		"STARTSWITH(deviceId, 'edge') OR CONTAINS(tags['odd key'], 'x')",
		"tags.x = 'a' AND", "NOT NOT NOT true",
	} {
		f.Add(s)
	}
	docs := fuzzDocs(f)
	f.Fuzz(func(t *testing.T, text string) {
		c, err := ParseCondition(text)
		if err != nil {
			if _, ok := err.(*Error); !ok || c != nil {
				t.Fatalf("want a nil condition and an *Error, got %v, %T", c, err)
			}
			return
		}
		canon := c.String()
		c2, err := ParseCondition(canon)
		if err != nil {
			t.Fatalf("canonical form of %q does not parse: %q: %v", text, canon, err)
		}
		if again := c2.String(); again != canon {
			t.Fatalf("not a fixed point:\n%q\n%q", canon, again)
		}
		for k, d := range docs.all() {
			if c.Match(d) != c2.Match(d) {
				t.Fatalf("%q and %q disagree on %s", text, canon, k)
			}
		}
		if field, values, ok := c.Keys(); ok {
			for k, d := range docs.all() {
				id, _ := d["deviceId"].(string)
				if c.Match(d) && !contains(values, id) {
					t.Fatalf("%s matches but its id is not among Keys() %q %q", k, field, values)
				}
			}
		}
	})
}

func contains(values []string, s string) bool {
	for _, v := range values {
		if v == s {
			return true
		}
	}
	return false
}
