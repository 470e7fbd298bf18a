package hub

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// query posts a query with a page size and continuation; it returns the
// items and the next continuation ("" when the header is absent).
func (f *fixture) query(t *testing.T, path, sql string, max, cont string) (int, []map[string]any, string, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"query": sql})
	req, _ := http.NewRequest("POST", f.srv.URL+path, strings.NewReader(string(body)))
	req.Header.Set("Authorization", ownerToken())
	if max != "" {
		req.Header.Set("x-ms-max-item-count", max)
	}
	if cont != "" {
		req.Header.Set("x-ms-continuation", cont)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var items []map[string]any
	if resp.StatusCode != 200 {
		var e map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, nil, "", e["message"]
	}
	if err := json.NewDecoder(resp.Body).Decode(&items); err != nil {
		t.Fatal(err)
	}
	next, has := resp.Header["X-Ms-Continuation"]
	if has && (len(next) != 1 || next[0] == "") {
		t.Fatalf("an empty x-ms-continuation header (the SDKs would loop): %q", next)
	}
	c := ""
	if has {
		c = next[0]
	}
	return 200, items, c, resp.Header.Get("x-ms-item-type")
}

// TestQueryAPI: POST /devices/query answers IoT Hub's query language over
// the twins (tags, properties, identity fields), pages with
// x-ms-continuation until the header is absent, counts and groups; a bad
// query is a 400 naming the position.
func TestQueryAPI(t *testing.T) {
	f := newFixture(t)
	for id, env := range map[string]string{"dev1": "prod", "other": "prod", "gw1": "dev"} {
		if _, err := f.h.UpdateTwin(f.ctx, id, []byte(`{"tags":{"env":"`+env+`"}}`), false); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	cont, pages := "", 0
	for {
		code, items, next, typ := f.query(t, "/devices/query", "SELECT * FROM devices WHERE tags.env = 'prod'", "1", cont)
		if code != 200 || typ != "twin" || len(items) > 1 {
			t.Fatalf("page %d: %d %v %q", pages, code, items, typ)
		}
		for _, it := range items {
			if it["etag"] == nil || it["properties"] == nil {
				t.Fatalf("a SELECT * item is not a twin: %v", it)
			}
			got = append(got, it["deviceId"].(string))
		}
		pages++
		if next == "" {
			break
		}
		cont = next
	}
	if strings.Join(got, ",") != "dev1,other" || pages > 3 {
		t.Fatalf("paged query: %v in %d pages", got, pages)
	}
	_, items, next, _ := f.query(t, "/devices/query", "SELECT COUNT() AS n FROM devices", "", "")
	if len(items) != 1 || items[0]["n"] != float64(3) || next != "" {
		t.Fatalf("COUNT: %v %q", items, next)
	}
	_, items, _, _ = f.query(t, "/devices/query", "SELECT tags.env, COUNT() AS n FROM devices GROUP BY tags.env", "", "")
	if b, _ := json.Marshal(items); string(b) != `[{"env":"dev","n":1},{"env":"prod","n":2}]` {
		t.Fatalf("GROUP BY: %s", b)
	}
	_, items, _, _ = f.query(t, "/devices/modules/query", "SELECT deviceId, moduleId FROM devices.modules WHERE deviceId = 'gw1'", "", "")
	if b, _ := json.Marshal(items); string(b) != `[{"deviceId":"gw1","moduleId":"$edgeAgent"},{"deviceId":"gw1","moduleId":"$edgeHub"}]` {
		t.Fatalf("modules: %s", b)
	}
	_, items, _, _ = f.query(t, "/devices/query", "SELECT deviceId FROM devices WHERE capabilities.iotEdge = true AND connectionState = 'Disconnected'", "", "")
	if len(items) != 1 || items[0]["deviceId"] != "gw1" {
		t.Fatalf("identity fields: %v", items)
	}
	code, _, _, msg := f.query(t, "/devices/query", "SELECT * FRM devices", "", "")
	if code != 400 || !strings.Contains(msg, "at 9") {
		t.Fatalf("syntax error: %d %q", code, msg)
	}
	code, _, _, msg = f.query(t, "/devices/query", "SELECT * FROM devices", "", "garbage")
	if code != 400 || !strings.Contains(msg, "continuation") {
		t.Fatalf("bad continuation: %d %q", code, msg)
	}
}
