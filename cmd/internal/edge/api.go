package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/broker"
	"github.com/outpost-edge/outpost/store/queue"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/store/wallclock"
	"github.com/outpost-edge/outpost/supervisor"
	"github.com/outpost-edge/outpost/sync/protocol"
	"github.com/outpost-edge/outpost/sync/upstream"
)

// Status is what GET /status answers and `outpost edge status` prints.
type Status struct {
	DeviceID string `json:"deviceId"`
	Link     string `json:"link"`
	// Clock is the edge's time estimate and whether its wall clock is
	// plausible (store/wallclock).
	Clock wallclock.State `json:"clock"`
	// Uplink counts what crossed the link (absent when standalone).
	Uplink *upstream.Status `json:"uplink,omitempty"`
	Queues []QueueStatus    `json:"queues"`
	Broker BrokerStatus     `json:"broker"`
	Disk   DiskStatus       `json:"disk"`
	// Deployment is the outcome of the last $edgeAgent deployment.
	Deployment        supervisor.DesiredStatus           `json:"deployment"`
	DeploymentVersion int64                              `json:"deploymentVersion"`
	Modules           map[string]supervisor.ModuleStatus `json:"modules"`
}

// QueueStatus is one endpoint × priority queue.
type QueueStatus struct {
	Name          string  `json:"name"`
	Depth         int64   `json:"depth"`
	Bytes         int64   `json:"bytes"`
	OldestSeconds float64 `json:"oldestAgeSeconds"`
	Expired       int64   `json:"expired"`
	Dropped       int64   `json:"dropped"`
	Rejected      int64   `json:"rejected"`
	NoSpace       int64   `json:"noSpace"` // refused: disk below its reserve (since start)
}

// BrokerStatus counts messages through the broker.
type BrokerStatus struct {
	Received int64 `json:"received"`
	Stored   int64 `json:"stored"`
	// NoRoute counts telemetry acknowledged although no route took it (as
	// in IoT Edge).
	NoRoute int64 `json:"noRoute"`
	Refused int64 `json:"refused"`
	// RefusedBy counts the refused publishes by reason (broker.Reason).
	RefusedBy  map[string]int64 `json:"refusedByReason"`
	Delivered  int64            `json:"delivered"`
	AuthFailed int64            `json:"authFailed"`
	Denied     int64            `json:"denied"`
}

// serveAPI starts the local HTTP API (status, twins, metrics) when --api is
// set.
func (e *edge) serveAPI() (io.Closer, error) {
	if e.cfg.API == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", e.cfg.API)
	if err != nil {
		return nil, fmt.Errorf("--api %s: %w", e.cfg.API, err)
	}
	e.ready.API = ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, e.status()) })
	mux.HandleFunc("GET /metrics", e.metrics)
	mux.HandleFunc("GET /twins/{d}", e.twinHandler)
	mux.HandleFunc("GET /twins/{d}/modules/{m}", e.twinHandler)
	mux.HandleFunc("GET /queues/{name...}", e.queueHandler)
	mux.HandleFunc("POST /devices/{d}/messages/deviceBound", e.c2dHandler)
	mux.HandleFunc("POST /twins/{d}/methods", e.methodHandler)
	mux.HandleFunc("POST /twins/{d}/modules/{m}/methods", e.methodHandler)
	mux.HandleFunc("GET /modules/{m}/logs", e.logsHandler)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}

func (e *edge) status() Status {
	rep := e.sup.Status()
	st := Status{DeviceID: e.cs.DeviceID, Link: e.linkState(), Clock: e.clock.State(), Modules: rep.Modules,
		Deployment: rep.LastDesiredStatus, DeploymentVersion: rep.LastDesiredVersion}
	if e.link != nil {
		u := e.link.Status()
		st.Uplink = &u
	}
	stats := e.queues.Stats()
	names := make([]string, 0, len(stats))
	for n := range stats {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := stats[n]
		st.Queues = append(st.Queues, QueueStatus{Name: n, Depth: s.Depth, Bytes: s.Bytes, OldestSeconds: s.OldestAge.Seconds(),
			Expired: int64(s.Expired), Dropped: int64(s.Dropped), Rejected: int64(s.Rejected), NoSpace: int64(s.NoSpace)})
	}
	b := e.broker.Stats()
	st.Broker = BrokerStatus{Received: b.Received.Load(), Stored: b.Stored.Load(), NoRoute: b.NoRoute.Load(), Refused: b.Refused.Load(),
		RefusedBy: map[string]int64{}, Delivered: b.Delivered.Load(), AuthFailed: b.AuthFailed.Load(), Denied: b.Denied.Load()}
	for r := range broker.NumReasons {
		st.Broker.RefusedBy[r.String()] = b.RefusedBy[r].Load()
	}
	st.Disk = e.diskStatus()
	return st
}

func (e *edge) linkState() string {
	if e.link == nil {
		return "standalone (--hub-url off): messages for $upstream stay queued"
	}
	st := e.link.Status()
	s := fmt.Sprintf("%s since %s (hub %s)", st.State, st.Since.UTC().Format(time.RFC3339), e.hubURL)
	if st.LastError != "" && st.State != "online" {
		s += ": " + st.LastError
	}
	return s
}

func (e *edge) twinHandler(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("d")
	if m := r.PathValue("m"); m != "" {
		id += "/" + m
	}
	v, err := e.twins.Get(id)
	switch {
	case errors.Is(err, twin.ErrNotFound):
		writeJSON(w, 404, map[string]string{"code": "NotFound", "message": err.Error()})
	case err != nil:
		writeJSON(w, 400, map[string]string{"code": "BadRequest", "message": err.Error()})
	default:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(v.ServiceJSON())
	}
}

// queueHandler lists queued messages without consuming them:
// GET /queues/{name}?after=SEQ&limit=N.
func (e *edge) queueHandler(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, ok := e.queues.Stats()[name]; !ok {
		writeJSON(w, 404, map[string]string{"code": "NotFound", "message": fmt.Sprintf("no queue %q; GET /status lists them", name)})
		return
	}
	after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || limit <= 0 || limit > 10000 {
		limit = 1000
	}
	q, err := e.queues.Queue(name, queue.QueueOptions{})
	if err == nil {
		var msgs []queue.Message
		if msgs, err = q.Read(after, limit); err == nil {
			if msgs == nil {
				msgs = []queue.Message{}
			}
			writeJSON(w, 200, msgs)
			return
		}
	}
	writeJSON(w, 500, map[string]string{"code": "Internal", "message": err.Error()})
}

// c2dHandler queues a cloud-to-device message, as the hub's REST API does.
func (e *edge) c2dHandler(w http.ResponseWriter, r *http.Request) {
	m, err := protocol.C2DMessage(r, r.PathValue("d"))
	if err != nil {
		writeJSON(w, 413, map[string]string{"code": "TooLarge", "message": err.Error()})
		return
	}
	if err := e.broker.SendC2D(r.Context(), r.PathValue("d"), m); err != nil {
		writeJSON(w, 500, map[string]string{"code": "Internal", "message": err.Error()})
		return
	}
	w.WriteHeader(204)
}

// methodHandler invokes a direct method on a connected device or module:
// {"methodName","payload","responseTimeoutInSeconds"} → {"status","payload"};
// 404 when the target is not connected, 504 when it does not answer.
func (e *edge) methodHandler(w http.ResponseWriter, r *http.Request) {
	req, err := protocol.ReadMethodRequest(r.Body)
	if err != nil {
		writeJSON(w, 400, map[string]string{"code": "BadRequest", "message": err.Error()})
		return
	}
	id := r.PathValue("d")
	if m := r.PathValue("m"); m != "" {
		id += "/" + m
	}
	res := e.invoke(r.Context(), id, req.MethodName, req.Payload, req.Timeout())
	if res.Error != "" { // the call did not reach an answer: 404, 504 or 500
		code := map[int]string{404: "DeviceNotOnline", 504: "GatewayTimeout"}[res.Status]
		if code == "" {
			code = "Internal"
		}
		writeJSON(w, res.Status, map[string]string{"code": code, "message": res.Error})
		return
	}
	writeJSON(w, 200, protocol.MethodAnswer(res.Status, res.Payload))
}

// metrics writes the Prometheus text format.
func (e *edge) metrics(w http.ResponseWriter, _ *http.Request) {
	st := e.status()
	var sb strings.Builder
	counter := func(name, help string, v int64) {
		fmt.Fprintf(&sb, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	counter("outpost_messages_received_total", "Telemetry messages accepted by the broker.", st.Broker.Received)
	counter("outpost_messages_stored_total", "Queue appends (one per endpoint a message is routed to).", st.Broker.Stored)
	counter("outpost_messages_no_route_total", "Accepted messages that matched no route.", st.Broker.NoRoute)
	sb.WriteString("# HELP outpost_messages_refused_total Publishes refused, by reason (the publisher got an error, never an acknowledgement).\n# TYPE outpost_messages_refused_total counter\n")
	for _, r := range slices.Sorted(maps.Keys(st.Broker.RefusedBy)) {
		fmt.Fprintf(&sb, "outpost_messages_refused_total{reason=%q} %d\n", r, st.Broker.RefusedBy[r])
	}
	d := st.Disk
	for _, g := range []struct {
		name, help string
		v          int64
	}{
		{"outpost_disk_free_bytes", "Free space the store can count on: statfs free minus the holes of its mapped files.", d.Free},
		{"outpost_disk_reserve_bytes", "Free space below which telemetry is refused.", d.Reserve},
		{"outpost_disk_allowance_bytes", "Free space below which only deletes run.", d.Allowance},
		{"outpost_disk_ballast_bytes", "Bytes the ballast file holds (0: released).", d.Ballast},
		{"outpost_queues_bytes", "Record bytes held by all queues.", d.QueueBytes},
		{"outpost_queues_max_bytes", "Cap on the record bytes of all queues.", d.MaxQueueBytes},
	} {
		fmt.Fprintf(&sb, "# HELP %s %s\n# TYPE %s gauge\n%s %d\n", g.name, g.help, g.name, g.name, g.v)
	}
	sb.WriteString("# HELP outpost_disk_state 1 for the disk's current state.\n# TYPE outpost_disk_state gauge\n")
	for _, s := range []string{"ok", "telemetry-refused", "full"} {
		v := 0
		if d.State == s {
			v = 1
		}
		fmt.Fprintf(&sb, "outpost_disk_state{state=%q} %d\n", s, v)
	}
	counter("outpost_messages_delivered_total", "Messages delivered to modules and devices and acknowledged.", st.Broker.Delivered)
	counter("outpost_auth_failed_total", "Refused connections.", st.Broker.AuthFailed)
	counter("outpost_acl_denied_total", "Publishes and subscriptions outside the client's identity.", st.Broker.Denied)
	plausible := 0
	if st.Clock.Plausible {
		plausible = 1
	}
	fmt.Fprintf(&sb, "# HELP outpost_clock_plausible 1 while the wall clock is plausible (0: the edge uses the last time known good or the hub's; see edge status).\n# TYPE outpost_clock_plausible gauge\noutpost_clock_plausible %d\n", plausible)
	if u := st.Uplink; u != nil {
		online := 0
		if u.State == "online" {
			online = 1
		}
		fmt.Fprintf(&sb, "# HELP outpost_uplink_online 1 while the link to the hub is up.\n# TYPE outpost_uplink_online gauge\noutpost_uplink_online %d\n", online)
		counter("outpost_uplink_messages_sent_total", "Messages the hub stored from this edge.", u.Sent)
		counter("outpost_uplink_batches_total", "Message batches the hub acknowledged.", u.Batches)
		counter("outpost_uplink_twin_deltas_sent_total", "Twin deltas sent to the hub.", u.TwinsUp)
		counter("outpost_uplink_twin_deltas_received_total", "Twin deltas merged from the hub.", u.TwinsDown)
		counter("outpost_uplink_c2d_received_total", "Cloud-to-device messages received from the hub.", u.C2D)
		counter("outpost_uplink_instance_collisions_total", "Messages the hub stored although it held others with their sequence numbers from this instance: another edge runs from a copy of this data directory.", u.InstanceCollisions)
		counter("outpost_uplink_twins_removed_total", "Twins removed because the hub deleted their identity.", u.TwinsRemoved)
		counter("outpost_uplink_twins_reset_total", "Twins started afresh because the hub created their identity again (a new generation).", u.TwinsReset)
		counter("outpost_uplink_messages_purged_total", "Queued messages (C2D, module inputs) removed with their deleted identity.", u.MessagesPurged)
		counter("outpost_uplink_messages_refused_total", "Messages the hub refused: their identity was deleted or created again since they were sent.", u.MessagesRefused)
		counter("outpost_uplink_twin_deltas_refused_total", "Twin deltas from the hub refused for another generation of their identity.", u.TwinsRefused)
		counter("outpost_twin_tombstones_collected_total", "Twin register fields removed by stable GC.", u.TombstonesGC)
		counter("outpost_uplink_hub_answers_ignored_total", "Answers of the hub ignored because they claimed more than the edge sent (an ack beyond the batch, a version vector ahead of its writes).", u.HubAnswersIgnored)
		counter("outpost_uplink_images_refused_total", "Module image downloads stopped: larger than the hub announced or than --max-image-size.", u.ImagesRefused)
	}
	sb.WriteString("# HELP outpost_queue_depth Messages waiting in a queue.\n# TYPE outpost_queue_depth gauge\n")
	for _, q := range st.Queues {
		fmt.Fprintf(&sb, "outpost_queue_depth{queue=%q} %d\n", q.Name, q.Depth)
	}
	sb.WriteString("# HELP outpost_queue_oldest_age_seconds Age of the oldest message in a queue.\n# TYPE outpost_queue_oldest_age_seconds gauge\n")
	for _, q := range st.Queues {
		fmt.Fprintf(&sb, "outpost_queue_oldest_age_seconds{queue=%q} %g\n", q.Name, q.OldestSeconds)
	}
	for _, m := range []struct {
		name string
		get  func(QueueStatus) int64
	}{{"expired", func(q QueueStatus) int64 { return q.Expired }}, {"dropped", func(q QueueStatus) int64 { return q.Dropped }}, {"rejected", func(q QueueStatus) int64 { return q.Rejected }}} {
		fmt.Fprintf(&sb, "# HELP outpost_queue_%s_total Messages %s by a queue.\n# TYPE outpost_queue_%s_total counter\n", m.name, m.name, m.name)
		for _, q := range st.Queues {
			fmt.Fprintf(&sb, "outpost_queue_%s_total{queue=%q} %d\n", m.name, q.Name, m.get(q))
		}
	}
	names := slices.Sorted(maps.Keys(st.Modules))
	sb.WriteString("# HELP outpost_module_running 1 while a module's process runs.\n# TYPE outpost_module_running gauge\n")
	for _, n := range names {
		running := 0
		if st.Modules[n].RuntimeStatus == "running" {
			running = 1
		}
		fmt.Fprintf(&sb, "outpost_module_running{module=%q} %d\n", n, running)
	}
	sb.WriteString("# HELP outpost_module_restarts Restarts of a module since its restart count was last reset.\n# TYPE outpost_module_restarts gauge\n")
	for _, n := range names {
		fmt.Fprintf(&sb, "outpost_module_restarts{module=%q} %d\n", n, st.Modules[n].RestartCount)
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_, _ = io.WriteString(w, sb.String())
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// FetchStatus reads GET /status from a running edge's API.
func FetchStatus(addr string) (Status, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/status")
	if err != nil {
		return Status{}, fmt.Errorf("edge API at %s: %w (is `outpost edge --api %s` running?)", addr, err, addr)
	}
	defer resp.Body.Close()
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return Status{}, fmt.Errorf("edge API at %s: %w", addr, err)
	}
	return st, nil
}

// FetchLogs copies a module's output from a running edge's API to w.
func FetchLogs(ctx context.Context, addr, module string, tail int, follow bool, w io.Writer) error {
	u := fmt.Sprintf("http://%s/modules/%s/logs?tail=%d&follow=%t", addr, url.PathEscape(module), tail, follow)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("edge API at %s: %w (is the edge running with --api %s?)", addr, err, addr)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Message string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("edge API: %s: %s", resp.Status, e.Message)
	}
	_, err = io.Copy(w, resp.Body)
	if ctx.Err() != nil {
		return nil
	}
	return err
}
