package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/sync/hub/query"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// putJob sends PUT /jobs/v2/{id} and decodes the answer.
func (f *fixture) putJob(t *testing.T, id, body string) (int, JobJSON, string) {
	t.Helper()
	code, data := f.do(t, "PUT", "/jobs/v2/"+id+"?api-version=2021-04-12", ownerToken(), []byte(body), map[string]string{"Content-Type": "application/json"})
	var j JobJSON
	if code == 200 {
		if err := json.Unmarshal(data, &j); err != nil {
			t.Fatalf("PUT job %s: %v: %s", id, err, data)
		}
	}
	return code, j, string(data)
}

// waitJob waits until job id satisfies ok and returns it.
func (f *fixture) waitJob(t *testing.T, id string, what string, ok func(JobJSON) bool) JobJSON {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		j, err := f.h.Job(id)
		if err == nil && ok(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s never %s: %+v (%v)", id, what, j, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func completed(j JobJSON) bool { return j.Status == statusCompleted }

// deviceJobs queries the per-device results of a job through the hub's
// query language, by device id.
func (f *fixture) deviceJobs(t *testing.T, sql string) map[string]map[string]any {
	t.Helper()
	res, itemType, err := f.h.Query(sql, query.Page{})
	if err != nil || itemType != "deviceJob" {
		t.Fatalf("%s: %v (item type %q)", sql, err, itemType)
	}
	out := map[string]map[string]any{}
	for _, it := range res.Items {
		out[it["deviceId"].(string)] = it
	}
	return out
}

// A twin update over a tag condition changes the matching twins only, as
// a service PATCH of tags and desired would; the job completes with its
// statistics, and each device's result is queryable.
func TestJobUpdateTwin(t *testing.T) {
	f := newFixture(t)
	for id, env := range map[string]string{"dev1": "prod", "other": "prod", "gw1": "dev"} {
		if _, err := f.h.UpdateTwin(f.ctx, id, []byte(`{"tags":{"env":"`+env+`"}}`), false); err != nil {
			t.Fatal(err)
		}
	}
	code, j, body := f.putJob(t, "j1", `{"jobId":"j1","type":"scheduleUpdateTwin","startTime":null,"queryCondition":"tags.env = 'prod'",
		"updateTwin":{"etag":"*","tags":{"color":"blue"},"properties":{"desired":{"rate":5}}}}`)
	if code != 200 || j.JobID != "j1" || j.Type != jobUpdateTwin || j.MaxExecutionTimeInSeconds != 3600 || j.CreatedTime == "" || j.StartTime == "" {
		t.Fatalf("PUT: %d %s", code, body)
	}
	j = f.waitJob(t, "j1", "completed", completed)
	want := JobStatistics{DeviceCount: 2, SucceededCount: 2}
	if j.DeviceJobStatistics != want || j.EndTime == "" {
		t.Errorf("completed job: %+v, want statistics %+v and an end time", j, want)
	}
	for id, changed := range map[string]bool{"dev1": true, "other": true, "gw1": false} {
		doc, _ := f.h.Twin(id)
		has := strings.Contains(string(doc), `"color":"blue"`) && strings.Contains(string(doc), `"rate":5`)
		if has != changed {
			t.Errorf("twin %s changed %v, want %v: %s", id, has, changed, doc)
		}
	}
	for _, sql := range []string{"SELECT * FROM devices.jobs WHERE jobId = 'j1'", "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'j1'"} {
		devs := f.deviceJobs(t, sql)
		if len(devs) != 2 || devs["dev1"] == nil || devs["other"] == nil {
			t.Fatalf("%s: %v, want dev1 and other", sql, devs)
		}
		for id, d := range devs {
			if d["status"] != statusCompleted || d["jobType"] != jobUpdateTwin || d["jobId"] != "j1" || d["endTimeUtc"] == nil || d["startTimeUtc"] == nil || d["error"] != nil {
				t.Errorf("%s: %v", id, d)
			}
		}
	}
	code, data := f.do(t, "GET", "/jobs/v2/j1", ownerToken(), nil, nil)
	if code != 200 || !strings.Contains(string(data), `"status":"completed"`) {
		t.Errorf("GET job: %d %s", code, data)
	}
}

// edgeLoop plays gw1: it pulls until stopped and answers the method calls
// answer accepts with 200 {"ok":1} (others it never answers); calls
// reports every call's target.
type edgeLoop struct {
	calls chan string
	stop  context.CancelFunc
	done  chan struct{}
}

func (f *fixture) runEdge(t *testing.T, answer func(target string) bool) *edgeLoop {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	e := &edgeLoop{calls: make(chan string, 100), stop: stop, done: make(chan struct{})}
	tok := sas.NewToken("hub.test/devices/gw1", f.gw.Auth.PrimaryKey, "", time.Now().Add(time.Hour))
	post := func(path string, in, out any) error {
		body, enc, err := protocol.Encode(in)
		if err != nil {
			return err
		}
		req, _ := http.NewRequestWithContext(ctx, "POST", f.srv.URL+path, bytes.NewReader(body))
		req.Header.Set("Authorization", tok)
		req.Header.Set("Content-Type", protocol.ContentType)
		if enc != "" {
			req.Header.Set("Content-Encoding", enc)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s: %d", path, resp.StatusCode)
		}
		if out == nil {
			return nil
		}
		return protocol.Decode(resp.Body, resp.Header.Get("Content-Encoding"), out)
	}
	go func() {
		defer close(e.done)
		scope := ""
		for ctx.Err() == nil {
			var push protocol.Push
			if err := post(protocol.PathPull, protocol.Pull{Instance: "edge:gw1.jobs", WaitMs: 1000, Scope: scope}, &push); err != nil {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			if push.Scope != "" {
				scope = push.Scope
			}
			for _, c := range push.Methods {
				e.calls <- c.Target
				if answer(c.Target) {
					_ = post(protocol.PathMethods, protocol.MethodResult{ID: c.ID, Status: 200, Payload: []byte(`{"ok":1}`)}, nil)
				}
			}
			if len(push.Methods) == 0 {
				time.Sleep(20 * time.Millisecond) // twin deltas come at once: do not spin
			}
		}
	}()
	t.Cleanup(e.close)
	for deadline := time.Now().Add(5 * time.Second); !f.h.edges.online("gw1"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("gw1 never online")
		}
	}
	return e
}

func (e *edgeLoop) close() {
	e.stop()
	<-e.done
}

// A method job: the device behind the connected edge answers, the one
// behind no edge fails; the job completes with one of each, the outcome
// and the error recorded per device.
func TestJobDeviceMethod(t *testing.T) {
	f := newFixture(t)
	f.runEdge(t, func(string) bool { return true })
	code, _, body := f.putJob(t, "m1", `{"jobId":"m1","type":"scheduleDeviceMethod","queryCondition":"deviceId IN ['dev1', 'other']",
		"cloudToDeviceMethod":{"methodName":"reboot","payload":{"delay":1},"responseTimeoutInSeconds":10}}`)
	if code != 200 || !strings.Contains(body, `"methodName":"reboot"`) {
		t.Fatalf("PUT: %d %s", code, body)
	}
	j := f.waitJob(t, "m1", "completed", completed)
	if want := (JobStatistics{DeviceCount: 2, SucceededCount: 1, FailedCount: 1}); j.DeviceJobStatistics != want {
		t.Errorf("statistics %+v, want %+v", j.DeviceJobStatistics, want)
	}
	devs := f.deviceJobs(t, "SELECT * FROM devices.jobs WHERE jobId = 'm1'")
	out, _ := json.Marshal(devs["dev1"]["outcome"])
	if devs["dev1"]["status"] != statusCompleted || string(out) != `{"deviceMethodResponse":{"payload":{"ok":1},"status":200}}` {
		t.Errorf("dev1: %v (outcome %s)", devs["dev1"], out)
	}
	e, _ := devs["other"]["error"].(map[string]any)
	if devs["other"]["status"] != statusFailed || e["code"] != "DeviceNotOnline" || e["description"] == "" {
		t.Errorf("other: %v", devs["other"])
	}
}

// A job starts at its startTime, not before; it can be cancelled while it
// waits, and stays cancelled.
func TestJobStartTimeAndCancel(t *testing.T) {
	clock := &fakeNow{t: time.Now()}
	f := newFixtureWith(t, Options{PullWait: 200 * time.Millisecond, Now: clock.Now})
	start := clock.Now().Add(10 * time.Minute).UTC().Format(time.RFC3339)
	for _, id := range []string{"later", "never"} {
		if code, j, body := f.putJob(t, id, `{"type":"scheduleUpdateTwin","queryCondition":"deviceId = 'dev1'","startTime":"`+start+`",
			"maxExecutionTimeInSeconds":60,"updateTwin":{"tags":{"job":"`+id+`"}}}`); code != 200 || j.Status != statusQueued || j.MaxExecutionTimeInSeconds != 60 {
			t.Fatalf("PUT %s: %d %s", id, code, body)
		}
	}
	f.h.startJobs(f.ctx) // a runner round: nothing is due
	f.h.runs.mu.Lock()
	n := len(f.h.runs.running)
	f.h.runs.mu.Unlock()
	if j, _ := f.h.Job("later"); n != 0 || j.Status != statusQueued {
		t.Fatalf("before its start time: %d runs, job %+v", n, j)
	}
	code, data := f.do(t, "POST", "/jobs/v2/never/cancel", ownerToken(), nil, nil)
	if code != 200 || !strings.Contains(string(data), `"status":"cancelled"`) || !strings.Contains(string(data), `"endTime"`) {
		t.Fatalf("cancel: %d %s", code, data)
	}
	clock.Add(10*time.Minute + time.Second)
	f.h.kickJobs()
	f.waitJob(t, "later", "completed", completed)
	if doc, _ := f.h.Twin("dev1"); !strings.Contains(string(doc), `"job":"later"`) || strings.Contains(string(doc), `"job":"never"`) {
		t.Errorf("dev1's twin: %s", doc)
	}
	if j, _ := f.h.Job("never"); j.Status != statusCancelled {
		t.Errorf("the cancelled job ran: %+v", j)
	}
	// Cancelling a finished job answers it as it is.
	code, data = f.do(t, "POST", "/jobs/v2/later/cancel", ownerToken(), nil, nil)
	if code != 200 || !strings.Contains(string(data), `"status":"completed"`) {
		t.Errorf("cancel a completed job: %d %s", code, data)
	}
}

// A job id is taken once (409), a condition that does not parse is a 400
// naming its position, and an unknown job is a 404.
func TestJobRequestsRefused(t *testing.T) {
	f := newFixture(t)
	twinJob := `{"type":"scheduleUpdateTwin","queryCondition":"tags.a = 1","updateTwin":{"tags":{"b":1}}}`
	if code, _, body := f.putJob(t, "dup", twinJob); code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	var e protocol.APIError
	code, _, body := f.putJob(t, "dup", twinJob)
	if code != 409 || json.Unmarshal([]byte(body), &e) != nil || e.Code != "JobAlreadyExists" {
		t.Errorf("second PUT of a job id: %d %s, want 409 JobAlreadyExists", code, body)
	}
	for _, c := range []struct{ body, want string }{
		{`{"type":"scheduleUpdateTwin","queryCondition":"tags.a = = 1","updateTwin":{"tags":{"b":1}}}`, "at 9"},
		{`{"type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":{"properties":{"reported":{"b":1}}}}`, "reported"},
		{`{"type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":{"etag":"*"}}`, "changes nothing"},
		{`{"type":"scheduleDeviceMethod","queryCondition":"*"}`, "cloudToDeviceMethod"},
		{`{"type":"export","queryCondition":"*"}`, "scheduleUpdateTwin or scheduleDeviceMethod"},
		{`{"type":"scheduleUpdateTwin","startTime":"tomorrow","updateTwin":{"tags":{"b":1}}}`, "startTime"},
		{`{"jobId":"other","type":"scheduleUpdateTwin","updateTwin":{"tags":{"b":1}}}`, "differs"},
	} {
		code, _, body := f.putJob(t, "bad", c.body)
		if code != 400 || !strings.Contains(body, c.want) {
			t.Errorf("PUT %s: %d %s, want 400 with %q", c.body, code, body, c.want)
		}
	}
	for _, r := range []struct{ method, path string }{{"GET", "/jobs/v2/nope"}, {"POST", "/jobs/v2/nope/cancel"}} {
		if code, data := f.do(t, r.method, r.path, ownerToken(), nil, nil); code != 404 {
			t.Errorf("%s %s: %d %s", r.method, r.path, code, data)
		}
	}
}

// GET /jobs/v2/query filters by type and status and pages with
// x-ms-continuation, absent on the last page.
func TestJobQuery(t *testing.T) {
	clock := &fakeNow{t: time.Now()}
	f := newFixtureWith(t, Options{PullWait: 200 * time.Millisecond, Now: clock.Now})
	start := clock.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	for i := range 5 {
		body := `{"type":"scheduleUpdateTwin","startTime":"` + start + `","updateTwin":{"tags":{"b":1}}}`
		if i >= 3 {
			body = `{"type":"scheduleDeviceMethod","startTime":"` + start + `","cloudToDeviceMethod":{"methodName":"m"}}`
		}
		if code, _, data := f.putJob(t, fmt.Sprintf("q%d", i), body); code != 200 {
			t.Fatalf("PUT: %d %s", code, data)
		}
	}
	if _, err := f.h.CancelJob(f.ctx, "q1"); err != nil {
		t.Fatal(err)
	}
	list := func(params, max, cont string) ([]string, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", f.srv.URL+"/jobs/v2/query?"+params, nil)
		req.Header.Set("Authorization", ownerToken())
		req.Header.Set("x-ms-max-item-count", max)
		if cont != "" {
			req.Header.Set("x-ms-continuation", cont)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var jobs []JobJSON
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || json.NewDecoder(resp.Body).Decode(&jobs) != nil {
			t.Fatalf("query %s: %d", params, resp.StatusCode)
		}
		next, has := resp.Header["X-Ms-Continuation"]
		if has && (len(next) != 1 || next[0] == "") {
			t.Fatalf("an empty x-ms-continuation header: %q", next)
		}
		var ids []string
		for _, j := range jobs {
			ids = append(ids, j.JobID)
		}
		if has {
			return ids, next[0]
		}
		return ids, ""
	}
	var all []string
	pages := 0
	for cont := ""; ; {
		ids, next := list("jobType=scheduleUpdateTwin", "2", cont)
		all, pages = append(all, ids...), pages+1
		if next == "" {
			break
		}
		cont = next
	}
	if !slices.Equal(all, []string{"q0", "q1", "q2"}) || pages != 2 {
		t.Errorf("twin jobs: %v in %d pages, want q0 q1 q2 in 2", all, pages)
	}
	for params, want := range map[string][]string{
		"jobStatus=cancelled":                         {"q1"},
		"jobStatus=queued&jobType=scheduleUpdateTwin": {"q0", "q2"},
		"jobType=scheduleDeviceMethod":                {"q3", "q4"},
		"":                                            {"q0", "q1", "q2", "q3", "q4"},
	} {
		if ids, next := list(params, "10", ""); !slices.Equal(ids, want) || next != "" {
			t.Errorf("%s: %v (continuation %q), want %v", params, ids, next, want)
		}
	}
}

// openDiskFixture opens a hub on dir (gw1 and its devices dev1..dev3 made
// on the first open) behind a test server; close stops it all.
func openDiskFixture(t *testing.T, dir string) (*fixture, func()) {
	t.Helper()
	ctx := context.Background()
	h, err := Open(ctx, dir, Options{HostName: "hub.test", OwnerKey: ownerKey, Incarnation: "jobstest", PullWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h.Handler())
	gw, err := h.Identity("gw1")
	if err != nil {
		if gw, err = h.PutDevice(ctx, identity.JSON{DeviceID: "gw1", Capabilities: &identity.Capabilities{IoTEdge: true}}); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{"dev1", "dev2", "dev3"} {
			if _, err := h.PutDevice(ctx, identity.JSON{DeviceID: d, ParentScopes: []string{gw.DeviceScope}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			h.Stop()
			srv.Close()
			if err := h.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	return &fixture{ctx: ctx, h: h, srv: srv, gw: gw}, stop
}

// A job interrupted by a restart resumes on the same data directory with
// the devices not done: a device with a recorded result is not called
// again, those interrupted mid-call are.
func TestJobResumesAfterRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hub")
	f, stop := openDiskFixture(t, dir)
	edge := f.runEdge(t, func(target string) bool { return target == "dev1" })
	code, _, body := f.putJob(t, "r1", `{"type":"scheduleDeviceMethod","queryCondition":"deviceId IN ['dev1','dev2','dev3']",
		"cloudToDeviceMethod":{"methodName":"flash","responseTimeoutInSeconds":300}}`)
	if code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	f.waitJob(t, "r1", "half done", func(j JobJSON) bool {
		return j.DeviceJobStatistics == JobStatistics{DeviceCount: 3, SucceededCount: 1, RunningCount: 2}
	})
	edge.close()
	stop()

	f, _ = openDiskFixture(t, dir)
	if j, _ := f.h.Job("r1"); j.Status != statusRunning {
		t.Fatalf("after the restart: %+v, want running", j)
	}
	edge = f.runEdge(t, func(string) bool { return true })
	j := f.waitJob(t, "r1", "completed", completed)
	if want := (JobStatistics{DeviceCount: 3, SucceededCount: 3}); j.DeviceJobStatistics != want {
		t.Errorf("statistics %+v, want %+v", j.DeviceJobStatistics, want)
	}
	edge.close()
	close(edge.calls)
	var again []string
	for c := range edge.calls {
		again = append(again, c)
	}
	slices.Sort(again)
	if !slices.Equal(again, []string{"dev2", "dev3"}) {
		t.Errorf("calls after the restart: %v, want dev2 and dev3 only", again)
	}
}

// Past maxExecutionTimeInSeconds a job fails, and so do its devices not
// done, with the reason.
func TestJobMaxExecutionTime(t *testing.T) {
	f := newFixture(t)
	f.runEdge(t, func(string) bool { return false }) // dev1 never answers
	if code, _, body := f.putJob(t, "slow", `{"type":"scheduleDeviceMethod","queryCondition":"deviceId = 'dev1'","maxExecutionTimeInSeconds":1,
		"cloudToDeviceMethod":{"methodName":"wait","responseTimeoutInSeconds":300}}`); code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	j := f.waitJob(t, "slow", "failed", func(j JobJSON) bool { return j.Status == statusFailed })
	if j.DeviceJobStatistics != (JobStatistics{DeviceCount: 1, FailedCount: 1}) || !strings.Contains(j.StatusMessage, "maxExecutionTimeInSeconds (1)") || j.FailureReason == "" {
		t.Errorf("timed out job: %+v", j)
	}
	d := f.deviceJobs(t, "SELECT * FROM devices.jobs WHERE jobId = 'slow'")["dev1"]
	if e, _ := d["error"].(map[string]any); d["status"] != statusFailed || !strings.Contains(fmt.Sprint(e["description"]), "maxExecutionTimeInSeconds") {
		t.Errorf("dev1: %v", d)
	}
}

// Finished jobs leave with their devices' results after the retention, a
// bounded number of records per command; jobs not finished stay.
func TestExpireJobs(t *testing.T) {
	f := newFixture(t)
	for _, c := range []any{
		putJob{ID: "old", Type: jobUpdateTwin, Twin: []byte(`{"tags":{"a":1}}`), Start: time.Now().Add(time.Hour).UnixMilli()}, // not run before it ends
		jobProgress{ID: "old", Devices: []deviceResult{{Device: "dev1", Status: statusPending}, {Device: "other", Status: statusPending}}},
		cancelJob{ID: "old"},
		putJob{ID: "live", Type: jobUpdateTwin, Twin: []byte(`{"tags":{"a":1}}`), Start: time.Now().Add(time.Hour).UnixMilli()},
	} {
		if err := f.h.apply(f.ctx, c); err != nil {
			t.Fatalf("%T: %v", c, err)
		}
	}
	before := time.Now().Add(time.Minute).UnixMilli()
	for i, want := range []int{2, 1, 0} {
		res, err := f.h.applyResult(f.ctx, expireJobs{Before: before, Max: 2})
		if err != nil || res != want {
			t.Fatalf("expireJobs %d: %v %v, want %d records removed", i, res, err, want)
		}
	}
	if _, err := f.h.Job("old"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the expired job stays: %v", err)
	}
	if _, err := f.h.Job("live"); err != nil {
		t.Errorf("the queued job went: %v", err)
	}
	if devs := f.deviceJobs(t, "SELECT * FROM devices.jobs"); len(devs) != 0 {
		t.Errorf("device results stay: %v", devs)
	}
}

// At most maxActiveJobs jobs are queued or running at once: the next is a
// 429 saying why; a finished (here cancelled) one makes room.
func TestJobsBounded(t *testing.T) {
	f := newFixture(t)
	start := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	req := JobRequest{Type: jobUpdateTwin, StartTime: &start, UpdateTwin: []byte(`{"tags":{"a":1}}`)}
	for i := range maxActiveJobs {
		if _, err := f.h.PutJob(f.ctx, fmt.Sprintf("b%03d", i), req); err != nil {
			t.Fatal(err)
		}
	}
	body := `{"type":"scheduleUpdateTwin","startTime":"` + start + `","updateTwin":{"tags":{"a":1}}}`
	if code, _, data := f.putJob(t, "one-more", body); code != 429 || !strings.Contains(data, "queued or running") {
		t.Fatalf("job %d: %d %s, want 429 with the reason", maxActiveJobs+1, code, data)
	}
	if _, err := f.h.CancelJob(f.ctx, "b000"); err != nil {
		t.Fatal(err)
	}
	if code, _, data := f.putJob(t, "one-more", body); code != 200 {
		t.Fatalf("after a cancel: %d %s", code, data)
	}
}
