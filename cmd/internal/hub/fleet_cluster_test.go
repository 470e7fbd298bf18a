package hub

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestClusterFleetAPI: the back-end API works on a cluster, each request at
// another node: a deployment at scale reaches the edge its condition
// targets (the leader's deployer applies it), a twin's etag holds across
// nodes (412 at one node for a version read at another), a query sees the
// tags, and a job runs to completion.
func TestClusterFleetAPI(t *testing.T) {
	nodes, key := threeNodes(t)
	url := func(i int) string { return nodes[i%3].ready.URL }
	must := func(code int, body []byte, what string) {
		t.Helper()
		if code != 200 && code != 204 {
			t.Fatalf("%s: %d %s", what, code, body)
		}
	}
	for i, d := range []string{"e1", "e2"} {
		// Right after the election a node may answer 503 (retry) until the
		// leader has published its address.
		eventually(t, "create "+d, func() error {
			code, body := call(t, key, "PUT", url(i)+"/devices/"+d, map[string]any{"deviceId": d, "capabilities": map[string]bool{"iotEdge": true}})
			if code != 200 {
				return fmt.Errorf("%d %s", code, body)
			}
			return nil
		})
	}
	code, body := call(t, key, "PATCH", url(1)+"/twins/e1", map[string]any{"tags": map[string]string{"env": "prod"}})
	must(code, body, "tag e1")
	code, body = call(t, key, "PATCH", url(2)+"/twins/e2", map[string]any{"tags": map[string]string{"env": "dev"}})
	must(code, body, "tag e2")

	content := map[string]any{"modulesContent": map[string]any{
		"$edgeAgent": map[string]any{"properties.desired": map[string]any{"modules": map[string]any{}}},
		"$edgeHub":   map[string]any{"properties.desired": map[string]any{"routes": map[string]string{"up": "FROM /messages/* INTO $upstream"}}},
	}}
	code, body = call(t, key, "PUT", url(2)+"/configurations/prod", map[string]any{"id": "prod", "targetCondition": "tags.env='prod'", "priority": 1, "content": content})
	must(code, body, "PUT configuration")
	eventually(t, "the deployment reaches e1", func() error {
		code, body := call(t, key, "GET", url(0)+"/twins/e1/modules/$edgeHub", nil)
		if code != 200 || !strings.Contains(string(body), `"up":"FROM /messages/* INTO $upstream"`) {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	if _, body := call(t, key, "GET", url(1)+"/twins/e2/modules/$edgeHub", nil); strings.Contains(string(body), `"up"`) {
		t.Fatalf("e2 (dev) got the prod deployment: %s", body)
	}

	// The etag read at one node is stale at another after a write at a third.
	_, body = call(t, key, "GET", url(0)+"/twins/e1", nil)
	var tw struct{ ETag string }
	_ = json.Unmarshal(body, &tw)
	code, body = call(t, key, "PATCH", url(1)+"/twins/e1", map[string]any{"tags": map[string]string{"site": "a"}})
	must(code, body, "tag e1 again")
	code, body = request(t, key, "PATCH", url(2)+"/twins/e1", "application/json", []byte(`{"tags":{"site":"b"}}`), "If-Match", `"`+tw.ETag+`"`)
	if code != 412 {
		t.Fatalf("PATCH with a stale etag at another node: %d %s, want 412", code, body)
	}

	code, body = call(t, key, "POST", url(2)+"/devices/query", map[string]string{"query": "SELECT deviceId FROM devices WHERE tags.env = 'prod'"})
	if code != 200 || string(body) != "[{\"deviceId\":\"e1\"}]\n" {
		t.Fatalf("query: %d %s", code, body)
	}

	code, body = call(t, key, "PUT", url(1)+"/jobs/v2/j1", map[string]any{"jobId": "j1", "type": "scheduleUpdateTwin",
		"queryCondition": "tags.env = 'prod'", "updateTwin": map[string]any{"tags": map[string]string{"job": "done"}}, "startTime": nil})
	must(code, body, "PUT job")
	eventually(t, "the job completes", func() error {
		code, body := call(t, key, "GET", url(2)+"/jobs/v2/j1", nil)
		if code != 200 || !strings.Contains(string(body), `"status":"completed"`) {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	_, body = call(t, key, "GET", url(0)+"/twins/e1", nil)
	if !strings.Contains(string(body), `"job":"done"`) {
		t.Fatalf("the job's write is not on e1: %s", body)
	}
}
