package localapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/sync/upstream"
)

// session logs in with a login code and returns the session cookie.
func (f *fixture) session() string {
	f.t.Helper()
	resp, _ := f.do(req{path: "/login?code=" + f.loginCode()})
	for _, c := range resp.Cookies() {
		if c.Name == CookieName {
			return CookieName + "=" + c.Value
		}
	}
	f.t.Fatal("no session cookie after the login URL")
	return ""
}

func TestModuleRestart(t *testing.T) {
	f := newFixture(t, nil)
	restart := req{method: "POST", path: "/modules/m/restart", body: "{}", ctype: "application/json"}
	for _, auth := range []req{{token: f.token}, {header: map[string]string{"Cookie": f.session()}}} {
		r := restart
		r.token, r.header = auth.token, auth.header
		before := f.restarted.Load()
		resp, data := f.do(r)
		var mr ModuleRestart
		if resp.StatusCode != 200 || json.Unmarshal(data, &mr) != nil || mr != (ModuleRestart{Module: "m", Restarted: true}) || f.restarted.Load() != before+1 {
			t.Errorf("restart with %+v: %d %s (restarts %d → %d)", auth, resp.StatusCode, data, before, f.restarted.Load())
		}
	}
	for _, c := range []struct {
		r    req
		want int
	}{
		{req{method: "POST", path: "/modules/nosuch/restart", body: "{}", ctype: "application/json", token: f.token}, 404},
		{req{method: "POST", path: "/modules/m/restart", body: "{}", ctype: "text/plain", token: f.token}, 415},
		{req{method: "POST", path: "/modules/m/restart", body: "{}", ctype: "application/json", token: f.token, header: map[string]string{"Origin": "http://evil.test"}}, 403},
		{req{method: "GET", path: "/modules/m/restart", token: f.token}, 405},
	} {
		before := f.restarted.Load()
		if resp, data := f.do(c.r); resp.StatusCode != c.want || f.restarted.Load() != before {
			t.Errorf("%s %s (%s, %v): %d %s, want %d and no restart", c.r.method, c.r.path, c.r.ctype, c.r.header, resp.StatusCode, data, c.want)
		}
	}
	// The CLI's client.
	if mr, err := (Client{Addr: f.srv.Addr(), Token: f.token}).Restart(context.Background(), "m"); err != nil || !mr.Restarted {
		t.Errorf("Client.Restart: %+v %v", mr, err)
	}
	if _, err := (Client{Addr: f.srv.Addr(), Token: f.token}).Restart(context.Background(), "nosuch"); err == nil || !strings.Contains(err.Error(), `no module "nosuch"`) {
		t.Errorf("Client.Restart of a missing module: %v", err)
	}
}

// streamEvents reads the event stream for d and returns the events by name.
func (f *fixture) streamEvents(hdr map[string]string, d time.Duration) map[string][]string {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	hr, _ := http.NewRequestWithContext(ctx, "GET", "http://"+f.srv.Addr()+"/events/stream", nil)
	for k, v := range hdr {
		hr.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		f.t.Fatalf("GET /events/stream: %d %s", resp.StatusCode, ct)
	}
	got := map[string][]string{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	name := ""
	for sc.Scan() {
		line := sc.Text()
		if n, ok := strings.CutPrefix(line, "event: "); ok {
			name = n
		} else if data, ok := strings.CutPrefix(line, "data: "); ok {
			got[name] = append(got[name], data)
		}
	}
	return got
}

// Anonymous streams (open on loopback like /status) carry the status and
// history only; the operator's also the twins, with each field's origin.
func TestEventStream(t *testing.T) {
	f := newFixture(t, nil)
	anon := f.streamEvents(nil, 500*time.Millisecond)
	if len(anon["history"]) != 1 || len(anon["status"]) < 2 || !strings.Contains(anon["status"][0], `"deviceId":"gw1"`) {
		t.Errorf("anonymous stream: %d history, %d status events (%.200q), want 1 and several", len(anon["history"]), len(anon["status"]), anon["status"])
	}
	for name, evs := range anon {
		for _, data := range evs {
			if name == "twins" || strings.Contains(data, "s3cr3t") {
				t.Fatalf("anonymous stream got %s: %.200s", name, data)
			}
		}
	}
	for _, hdr := range []map[string]string{{"Authorization": "Bearer " + f.token}, {"Cookie": f.session()}} {
		op := f.streamEvents(hdr, 300*time.Millisecond)
		if len(op["twins"]) == 0 || !strings.Contains(op["twins"][0], `"path":"secret","value":"s3cr3t","origin":"edge:gw1.`) ||
			!strings.Contains(op["twins"][0], `"pending":true`) || !strings.Contains(op["history"][0], `"operator":true`) {
			t.Errorf("operator stream (%v): twins %.300q, history %.100q", hdr, op["twins"], op["history"])
		}
	}
}

// The live view remembers the link's changes and the samples the plots
// draw: a page opened later still shows the link going down and the
// backlog it left.
func TestLiveHistory(t *testing.T) {
	var mu sync.Mutex
	state, depth, since := "online", int64(0), time.Now()
	f := newFixture(t, func(o *Options) {
		o.Status = func() Status {
			mu.Lock()
			defer mu.Unlock()
			return Status{DeviceID: "gw1", Uplink: &upstream.Status{State: state, Since: since},
				Queues: []QueueStatus{{Name: "$upstream/pdefault", Depth: depth}}}
		}
	})
	set := func(s string, d int64) {
		mu.Lock()
		defer mu.Unlock()
		state, depth, since = s, d, since.Add(time.Second)
	}
	hist := func() (h struct {
		Samples []Sample     `json:"samples"`
		Links   []LinkChange `json:"links"`
	}) {
		evs := f.streamEvents(nil, 100*time.Millisecond)
		if len(evs["history"]) != 1 || json.Unmarshal([]byte(evs["history"][0]), &h) != nil {
			t.Fatalf("history events: %q", evs["history"])
		}
		return h
	}
	waitHistory := func(ok func(Sample) bool, what string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; {
			h := hist()
			if len(h.Samples) > 0 && ok(h.Samples[len(h.Samples)-1]) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s: history %+v", what, h)
			}
		}
	}
	waitHistory(func(s Sample) bool { return s.Link == "online" }, "an online sample")
	set("offline", 40)
	waitHistory(func(s Sample) bool { return s.Link == "offline" && s.Upstream == 40 }, "the link down with 40 waiting")
	set("online", 0)
	waitHistory(func(s Sample) bool { return s.Link == "online" && s.Upstream == 0 }, "the link back, drained")
	h := hist()
	var states []string
	for _, l := range h.Links {
		states = append(states, l.State)
	}
	if strings.Join(states, " ") != "online offline online" {
		t.Errorf("link history %v, want online offline online", states)
	}
	peak := int64(0)
	for _, s := range h.Samples {
		peak = max(peak, s.Upstream)
	}
	if peak != 40 {
		t.Errorf("the samples' peak backlog is %d, want 40", peak)
	}
}

// The status event carries what GET /status shows: the idle $upstream
// lanes left out, while the sample still counts every queue.
func TestStatusEventHidesIdleLanes(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.Status = func() Status {
			return Status{Queues: []QueueStatus{{Name: "$upstream/p0"}, {Name: "$upstream/p1", Depth: 3}, {Name: "$upstream/pdefault", Depth: 2}}}
		}
	})
	evs := f.streamEvents(nil, 300*time.Millisecond)
	if len(evs["status"]) == 0 {
		t.Fatal("no status event")
	}
	var ev struct {
		Status Status `json:"status"`
		Sample Sample `json:"sample"`
	}
	if err := json.Unmarshal([]byte(evs["status"][0]), &ev); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, q := range ev.Status.Queues {
		names = append(names, q.Name)
	}
	if got, want := strings.Join(names, " "), "$upstream/p1 $upstream/pdefault"; got != want || ev.Sample.Upstream != 5 {
		t.Errorf("status event queues %s (upstream %d), want %s (upstream 5)", got, ev.Sample.Upstream, want)
	}
}

// With no stream open the sampler reads LiveStatus, not the full Status;
// a stream gets the full Status.
func TestSamplerReadsLiveStatusWithoutViewer(t *testing.T) {
	var full, light atomic.Int64
	f := newFixture(t, func(o *Options) {
		o.Status = func() Status {
			full.Add(1)
			return Status{DeviceID: "gw1", Queues: []QueueStatus{{Name: "$upstream/pdefault", Depth: 7}}}
		}
		o.LiveStatus = func() Status {
			light.Add(1)
			return Status{Queues: []QueueStatus{{Name: "$upstream/pdefault", Depth: 7}}}
		}
	})
	for deadline := time.Now().Add(5 * time.Second); light.Load() < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("LiveStatus read %d times", light.Load())
		}
	}
	if n := full.Load(); n != 0 {
		t.Errorf("Status read %d times with no viewer, want 0", n)
	}
	evs := f.streamEvents(nil, 300*time.Millisecond)
	if len(evs["status"]) == 0 || !strings.Contains(evs["status"][0], `"deviceId":"gw1"`) || full.Load() == 0 {
		t.Errorf("a viewer's status events %q (Status read %d times), want the full status", evs["status"], full.Load())
	}
	if !strings.Contains(evs["history"][0], `"upstream":7`) {
		t.Errorf("history %q, want samples of the upstream depth 7", evs["history"][0])
	}
}

func TestKeepLast(t *testing.T) {
	var s []int
	for i := range 5 {
		s = keepLast(s, i, 3)
	}
	if fmt.Sprint(s) != "[2 3 4]" {
		t.Errorf("keepLast kept %v, want [2 3 4]", s)
	}
}
