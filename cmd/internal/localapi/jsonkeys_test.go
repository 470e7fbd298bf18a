package localapi

import (
	"context"
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/queue"
)

// The edge's API speaks one JSON style, IoT Hub's camelCase: Go field names
// (`NoRoute`, `ID`, `TTL`) leaked into /status and /queues before.

var camelCase = regexp.MustCompile(`^\$?[a-z][a-zA-Z0-9]*$`)

// dictionaries are the objects whose keys are data (module names, reasons,
// application properties), not field names.
var dictionaries = map[string]bool{
	"modules": true, "refusedByReason": true, "connectionsRefusedByReason": true,
	"properties": true, "systemProperties": true, "platform": true, "env": true,
}

// checkKeys walks the JSON document v and reports every key that is not
// camelCase, by its path.
func checkKeys(t *testing.T, path string, v any) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		parent := path[strings.LastIndex(path, ".")+1:]
		for k, e := range v {
			if !dictionaries[parent] && !camelCase.MatchString(k) {
				t.Errorf("%s.%s: key %q is not camelCase", path, k, k)
			}
			checkKeys(t, path+"."+k, e)
		}
	case []any:
		for _, e := range v {
			checkKeys(t, path+"[]", e)
		}
	}
}

// fill sets every field reachable from v to a non-zero value (maps and
// slices with one element, pointers allocated), so that omitempty hides
// nothing from checkKeys.
func fill(v reflect.Value, depth int) {
	if depth > 8 {
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), depth+1)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0), depth+1)
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, depth+1)
		fill(e, depth+1)
		v.SetMapIndex(k, e)
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(time.Unix(1700000000, 0).UTC()))
			return
		}
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), depth+1)
			}
		}
	}
}

// TestJSONKeysCamelCase walks the JSON of GET /status (every field set)
// and GET /queues/{name} (a message with every part) and fails on any key
// that is not camelCase.
func TestJSONKeysCamelCase(t *testing.T) {
	var st Status
	fill(reflect.ValueOf(&st).Elem(), 0)
	f := newFixture(t, func(o *Options) { o.Status = func() Status { return st } })
	q, err := f.queues.Queue("$upstream/p0", queue.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := queue.Message{ID: "m1", Source: "devices/d/modules/m", Props: map[string]string{"Origin": "cli"},
		Sys: map[string]string{"$.ct": "application/json"}, Body: []byte(`{"t":1}`), TTL: 90 * time.Second}
	if _, err := q.Append(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/status", "/queues/$upstream/p0", "/clients"} {
		_, data := f.do(req{path: path, token: f.token})
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			t.Fatalf("%s: %v\n%s", path, err, data)
		}
		checkKeys(t, path, v)
	}
	_, data := f.do(req{path: "/queues/$upstream/p0", token: f.token})
	want := `"messageId":"m1","source":"devices/d/modules/m","properties":{"Origin":"cli"},"systemProperties":{"$.ct":"application/json"},"body":"eyJ0IjoxfQ==","ttlSeconds":90,"seq":1,"enqueuedTime":"`
	if !strings.Contains(string(data), want) {
		t.Errorf("queue listing\n%s\nwant a message with\n%s", data, want)
	}
}

// TestStatusHidesIdleLanes: GET /status leaves out the $upstream/p0…p9
// lanes that hold and counted nothing; pdefault and busy lanes stay.
func TestStatusHidesIdleLanes(t *testing.T) {
	var qs []QueueStatus
	for _, p := range []string{"p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "pdefault"} {
		qs = append(qs, QueueStatus{Name: "$upstream/" + p})
	}
	qs[3].Depth, qs[3].Bytes = 2, 10
	qs[7].Expired = 1
	qs = append(qs, QueueStatus{Name: "c2d/sensor1/p0"})
	f := newFixture(t, func(o *Options) { o.Status = func() Status { return Status{Queues: qs} } })
	_, data := f.do(req{path: "/status", token: f.token})
	var st Status
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, q := range st.Queues {
		names = append(names, q.Name)
	}
	if got, want := strings.Join(names, " "), "$upstream/p3 $upstream/p7 $upstream/pdefault c2d/sensor1/p0"; got != want {
		t.Errorf("queues %s, want %s", got, want)
	}
}
