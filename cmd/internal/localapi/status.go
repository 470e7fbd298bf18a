package localapi

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/outpost-edge/outpost/store/wallclock"
	"github.com/outpost-edge/outpost/supervisor"
	"github.com/outpost-edge/outpost/sync/downstream"
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
	// Downstream is what child edges sent this edge (--downstream; nested edges).
	Downstream *downstream.Stats `json:"downstream,omitempty"`
	Queues     []QueueStatus     `json:"queues"`
	Broker     BrokerStatus      `json:"broker"`
	Disk       DiskStatus        `json:"disk"`
	// Memory is the edge's memory budget and how it is spent.
	Memory MemoryStatus `json:"memory"`
	// Goroutines is how many goroutines the edge runs now: flat while the
	// edge runs, whatever its uptime (a leak shows here first).
	Goroutines int `json:"goroutines"`
	// Deployment is the outcome of the last $edgeAgent deployment.
	Deployment        supervisor.DesiredStatus           `json:"deployment"`
	DeploymentVersion int64                              `json:"deploymentVersion"`
	Modules           map[string]supervisor.ModuleStatus `json:"modules"`
	// ModuleIsolation says what keeps modules apart from the edge and
	// from each other: "uid" (each under its own uid; the edge is root) or
	// "none: …" with what is missing.
	ModuleIsolation string `json:"moduleIsolation"`
}

// MemoryStatus is the edge's memory budget, where it came from, and the
// sizes it set (cmd/internal/membudget).
type MemoryStatus struct {
	Budget int64 `json:"budget"` // bytes; 0: none
	// Source: "--memory-budget", "cgroup v2 /sys/fs/cgroup/…/memory.max",
	// "cgroup v1 …/memory.limit_in_bytes", or "none".
	Source string `json:"source"`
	// GoLimit is the Go memory limit in force (debug.SetMemoryLimit(-1));
	// GoLimitFrom says who set it: "budget" (five eighths of the budget), "default"
	// (no budget: 128 MiB) or "GOMEMLIMIT" (the environment wins).
	GoLimit     int64  `json:"goMemoryLimit"`
	GoLimitFrom string `json:"goMemoryLimitFrom"`
	// Badger's sizes (store/kv Options) as the store was opened.
	MemTableSize   int64 `json:"memTableSize"`
	NumMemtables   int   `json:"numMemtables"`
	BaseTableSize  int64 `json:"baseTableSize"`
	BlockCacheSize int64 `json:"blockCacheSize"`
	IndexCacheSize int64 `json:"indexCacheSize"`
}

// QueueStatus is one endpoint × priority queue.
type QueueStatus struct {
	Name          string  `json:"name"`
	Depth         int64   `json:"depth"`
	Bytes         int64   `json:"bytes"`
	OldestSeconds float64 `json:"oldestAgeSeconds"`
	// Appended and Acked count messages in and out since the queue was
	// made (the dashboard's rates).
	Appended int64 `json:"appended"`
	Acked    int64 `json:"acked"`
	Expired  int64 `json:"expired"`
	Dropped  int64 `json:"dropped"`
	Rejected int64 `json:"rejected"`
	NoSpace  int64 `json:"noSpace"` // refused: disk below its reserve (since start)
}

// HideIdleLanes drops the priority lanes of $upstream ($upstream/p0 …
// p9) that hold nothing and have counted nothing: eleven queues of which
// most are never used. $upstream/pdefault, where unprioritised routes go,
// and every other queue stay. The metrics keep them all (a series should
// not come and go).
func HideIdleLanes(qs []QueueStatus) []QueueStatus {
	out := make([]QueueStatus, 0, len(qs))
	for _, q := range qs {
		if q.idle() && isLane(q.Name) {
			continue
		}
		out = append(out, q)
	}
	return out
}

func (q QueueStatus) idle() bool {
	return q.Depth == 0 && q.Bytes == 0 && q.Expired == 0 && q.Dropped == 0 && q.Rejected == 0 && q.NoSpace == 0
}

// isLane reports whether name is $upstream/p0 … $upstream/p9.
func isLane(name string) bool {
	p, ok := strings.CutPrefix(name, "$upstream/p")
	return ok && len(p) == 1 && '0' <= p[0] && p[0] <= '9'
}

// BrokerStatus counts messages through the broker.
type BrokerStatus struct {
	Received int64 `json:"received"`
	Stored   int64 `json:"stored"`
	// NoRoute counts telemetry acknowledged although no route took it (as
	// in IoT Edge).
	NoRoute int64 `json:"noRoute"`
	// Publishes on free MQTT topics the policy allowed; the queue appends
	// made for those a route FROM /topics/… took (also counted in Stored);
	// those no route took (local subscribers still got them).
	TopicReceived int64 `json:"topicReceived"`
	TopicStored   int64 `json:"topicStored"`
	TopicNoRoute  int64 `json:"topicNoRoute"`
	// MQTT session state (retained messages, persistent sessions, wills):
	// writes that failed or that a full disk refused (that state does not
	// survive a restart), and wills published after a restart.
	SessionStateFailed int64 `json:"sessionStateFailed"`
	WillsAfterRestart  int64 `json:"willsAfterRestart"`
	Refused            int64 `json:"refused"`
	// RefusedBy counts the refused publishes by reason (broker.Reason).
	RefusedBy  map[string]int64 `json:"refusedByReason"`
	Delivered  int64            `json:"delivered"`
	AuthFailed int64            `json:"authFailed"`
	// AuthFailedBy counts the refused CONNECTs by reason (broker.AuthReason).
	AuthFailedBy map[string]int64 `json:"authFailedByReason"`
	Denied       int64            `json:"denied"`
	// Live sessions ended because their identity was deleted or disabled
	// or its credentials changed, or because their SAS token or client
	// certificate expired.
	SessionsRevoked int64 `json:"sessionsRevoked"`
	SessionsExpired int64 `json:"sessionsExpired"`
	// Connections open now; connections refused or cut before they
	// authenticated, by reason (broker.ConnReason); topic filters refused
	// by the subscription cap.
	Connections          int64            `json:"connections"`
	ConnectionsRefusedBy map[string]int64 `json:"connectionsRefusedByReason"`
	SubscriptionsRefused int64            `json:"subscriptionsRefused"`
}

// DiskStatus is the data filesystem as the store sees it.
type DiskStatus struct {
	State       string `json:"state"` // ok, telemetry-refused or full
	Size        int64  `json:"size"`
	Free        int64  `json:"free"`      // statfs free minus the holes of the store's mapped files
	Holes       int64  `json:"holes"`     // unallocated bytes inside the store's mapped files
	Reserve     int64  `json:"reserve"`   // below this free space telemetry is refused
	Allowance   int64  `json:"allowance"` // below this free space only deletes run
	Ballast     int64  `json:"ballast"`   // bytes the ballast file holds now
	BallastHeld bool   `json:"ballastHeld"`
	// MaxQueueBytes caps all queues' record bytes; QueueBytes is what they hold.
	MaxQueueBytes    int64  `json:"maxQueueBytes"`
	QueueBytes       int64  `json:"queueBytes"`
	Overflow         string `json:"overflow"`
	RefusedTelemetry int64  `json:"refusedTelemetry"`
	RefusedWrites    int64  `json:"refusedWrites"`
}

// metrics writes the Prometheus text format.
func (s *Server) metrics(w http.ResponseWriter, _ *http.Request) {
	st := s.opts.Status()
	var sb strings.Builder
	writeMetrics(&sb, st)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_, _ = io.WriteString(w, sb.String())
}

func counter(sb *strings.Builder, name, help string, v int64) {
	fmt.Fprintf(sb, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
}

func writeMetrics(sb *strings.Builder, st Status) {
	counter(sb, "outpost_messages_received_total", "Telemetry messages accepted by the broker.", st.Broker.Received)
	counter(sb, "outpost_messages_stored_total", "Queue appends (one per endpoint a message is routed to).", st.Broker.Stored)
	counter(sb, "outpost_messages_no_route_total", "Accepted messages that matched no route.", st.Broker.NoRoute)
	counter(sb, "outpost_topic_messages_received_total", "Publishes on free MQTT topics the policy allowed.", st.Broker.TopicReceived)
	counter(sb, "outpost_mqtt_state_write_failed_total", "MQTT session state writes (retained, persistent sessions, wills) that failed or a full disk refused: that state does not survive a restart.", st.Broker.SessionStateFailed)
	counter(sb, "outpost_mqtt_wills_after_restart_total", "Wills published after a restart for clients connected when the edge died.", st.Broker.WillsAfterRestart)
	counter(sb, "outpost_topic_messages_stored_total", "Queue appends of free-topic messages routed FROM /topics/ (also in outpost_messages_stored_total).", st.Broker.TopicStored)
	counter(sb, "outpost_topic_messages_no_route_total", "Free-topic messages no route took (local subscribers still got them).", st.Broker.TopicNoRoute)
	sb.WriteString("# HELP outpost_messages_refused_total Publishes refused, by reason (the publisher got an error, never an acknowledgement).\n# TYPE outpost_messages_refused_total counter\n")
	for _, r := range slices.Sorted(maps.Keys(st.Broker.RefusedBy)) {
		fmt.Fprintf(sb, "outpost_messages_refused_total{reason=%q} %d\n", r, st.Broker.RefusedBy[r])
	}
	writeDiskMetrics(sb, st.Disk)
	counter(sb, "outpost_messages_delivered_total", "Messages delivered to modules and devices and acknowledged.", st.Broker.Delivered)
	counter(sb, "outpost_auth_failed_total", "Refused connections.", st.Broker.AuthFailed)
	sb.WriteString("# HELP outpost_auth_refused_total Refused CONNECTs by reason (bad_credentials, not_authorized, client_id, rate_limited, busy).\n# TYPE outpost_auth_refused_total counter\n")
	for _, r := range slices.Sorted(maps.Keys(st.Broker.AuthFailedBy)) {
		fmt.Fprintf(sb, "outpost_auth_refused_total{reason=%q} %d\n", r, st.Broker.AuthFailedBy[r])
	}
	counter(sb, "outpost_acl_denied_total", "Publishes and subscriptions outside the client's identity.", st.Broker.Denied)
	counter(sb, "outpost_sessions_revoked_total", "Live sessions ended: identity deleted or disabled, or its credentials changed.", st.Broker.SessionsRevoked)
	counter(sb, "outpost_sessions_expired_total", "Live sessions ended: their SAS token (after the allowed skew) or client certificate expired.", st.Broker.SessionsExpired)
	fmt.Fprintf(sb, "# HELP outpost_mqtt_connections MQTT connections open now.\n# TYPE outpost_mqtt_connections gauge\noutpost_mqtt_connections %d\n", st.Broker.Connections)
	sb.WriteString("# HELP outpost_mqtt_connections_refused_total MQTT connections refused or cut before they authenticated, by reason.\n# TYPE outpost_mqtt_connections_refused_total counter\n")
	for _, r := range slices.Sorted(maps.Keys(st.Broker.ConnectionsRefusedBy)) {
		fmt.Fprintf(sb, "outpost_mqtt_connections_refused_total{reason=%q} %d\n", r, st.Broker.ConnectionsRefusedBy[r])
	}
	counter(sb, "outpost_mqtt_subscriptions_refused_total", "Topic filters refused by the subscription cap.", st.Broker.SubscriptionsRefused)
	plausible := 0
	if st.Clock.Plausible {
		plausible = 1
	}
	fmt.Fprintf(sb, "# HELP outpost_clock_plausible 1 while the wall clock is plausible (0: the edge uses the last time known good or the hub's; see edge status).\n# TYPE outpost_clock_plausible gauge\noutpost_clock_plausible %d\n", plausible)
	if u := st.Uplink; u != nil {
		writeUplinkMetrics(sb, u)
	}
	if d := st.Downstream; d != nil {
		counter(sb, "outpost_downstream_messages_total", "Messages child edges sent that this edge queued for upstream (since start).", d.Messages)
		counter(sb, "outpost_downstream_duplicates_total", "Messages child edges sent again that this edge already held (since start).", d.Duplicates)
		counter(sb, "outpost_downstream_collisions_total", "Messages of child edges queued although their incarnation had sent others under the same numbers: a copy of a child's data directory runs (since start).", d.Collisions)
		counter(sb, "outpost_downstream_busy_total", "Requests of child edges refused (429) because the child had as many in flight as it may (since start).", d.Busy)
		counter(sb, "outpost_downstream_refused_total", "Messages of child edges acknowledged and not queued: source outside the child's subtree or a bad edge path (since start).", d.Refused)
		sb.WriteString("# HELP outpost_downstream_child_backlog Messages waiting in a child edge's upstream queues at its last pull.\n# TYPE outpost_downstream_child_backlog gauge\n")
		for _, c := range d.Children {
			fmt.Fprintf(sb, "outpost_downstream_child_backlog{child=%q} %d\n", c.ID, c.Backlog)
		}
	}
	writeQueueMetrics(sb, st.Queues)
	writeModuleMetrics(sb, st.Modules)
	fmt.Fprintf(sb, "# HELP go_goroutines Goroutines the edge runs now.\n# TYPE go_goroutines gauge\ngo_goroutines %d\n", st.Goroutines)
}

func writeDiskMetrics(sb *strings.Builder, d DiskStatus) {
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
		fmt.Fprintf(sb, "# HELP %s %s\n# TYPE %s gauge\n%s %d\n", g.name, g.help, g.name, g.name, g.v)
	}
	counter(sb, "outpost_disk_refused_telemetry_total", "Telemetry refused because the disk was below its reserve (since start).", d.RefusedTelemetry)
	counter(sb, "outpost_disk_refused_writes_total", "Store writes refused because the disk was below its allowance (since start).", d.RefusedWrites)
	sb.WriteString("# HELP outpost_disk_state 1 for the disk's current state.\n# TYPE outpost_disk_state gauge\n")
	for _, s := range []string{"ok", "telemetry-refused", "full"} {
		v := 0
		if d.State == s {
			v = 1
		}
		fmt.Fprintf(sb, "outpost_disk_state{state=%q} %d\n", s, v)
	}
}

func writeUplinkMetrics(sb *strings.Builder, u *upstream.Status) {
	online := 0
	if u.State == "online" {
		online = 1
	}
	fmt.Fprintf(sb, "# HELP outpost_uplink_online 1 while the link to the hub is up.\n# TYPE outpost_uplink_online gauge\noutpost_uplink_online %d\n", online)
	refused, duplicate := 0, 0
	if u.State == "unauthorized" || u.State == "forbidden" {
		refused = 1
	}
	if u.DuplicateInstance {
		duplicate = 1
	}
	fmt.Fprintf(sb, "# HELP outpost_uplink_refused 1 while the hub refuses this edge's credentials (401 unauthorized, 403 forbidden).\n# TYPE outpost_uplink_refused gauge\noutpost_uplink_refused %d\n", refused)
	fmt.Fprintf(sb, "# HELP outpost_uplink_duplicate_instance 1 while the hub sees another edge online with this edge's identity.\n# TYPE outpost_uplink_duplicate_instance gauge\noutpost_uplink_duplicate_instance %d\n", duplicate)
	counter(sb, "outpost_uplink_messages_sent_total", "Messages the hub stored from this edge.", u.Sent)
	counter(sb, "outpost_uplink_batches_total", "Message batches the hub acknowledged.", u.Batches)
	counter(sb, "outpost_uplink_twin_deltas_sent_total", "Twin deltas sent to the hub.", u.TwinsUp)
	counter(sb, "outpost_uplink_twin_deltas_received_total", "Twin deltas merged from the hub.", u.TwinsDown)
	counter(sb, "outpost_uplink_c2d_received_total", "Cloud-to-device messages received from the hub.", u.C2D)
	counter(sb, "outpost_uplink_instance_collisions_total", "Messages the hub stored although it held others with their sequence numbers from this instance: another edge runs from a copy of this data directory.", u.InstanceCollisions)
	counter(sb, "outpost_uplink_twins_removed_total", "Twins removed because the hub deleted their identity.", u.TwinsRemoved)
	counter(sb, "outpost_uplink_twins_reset_total", "Twins started afresh because the hub created their identity again (a new generation).", u.TwinsReset)
	counter(sb, "outpost_uplink_messages_purged_total", "Queued messages (C2D, module inputs) removed with their deleted identity.", u.MessagesPurged)
	counter(sb, "outpost_uplink_messages_refused_total", "Messages the hub refused: their identity was deleted or created again since they were sent.", u.MessagesRefused)
	counter(sb, "outpost_uplink_twin_deltas_refused_total", "Twin deltas from the hub refused for another generation of their identity.", u.TwinsRefused)
	counter(sb, "outpost_twin_tombstones_collected_total", "Twin register fields removed by stable GC.", u.TombstonesGC)
	counter(sb, "outpost_uplink_hub_answers_ignored_total", "Answers of the hub ignored because they claimed more than the edge sent (an ack beyond the batch, a version vector ahead of its writes).", u.HubAnswersIgnored)
	counter(sb, "outpost_uplink_hub_switches_total", "Times the link switched to another node of its hub cluster (--hub-url with several URLs).", u.HubSwitches)
	counter(sb, "outpost_uplink_images_refused_total", "Module image downloads stopped: larger than the hub announced or than --max-image-size.", u.ImagesRefused)
}

func writeQueueMetrics(sb *strings.Builder, queues []QueueStatus) {
	sb.WriteString("# HELP outpost_queue_depth Messages waiting in a queue.\n# TYPE outpost_queue_depth gauge\n")
	for _, q := range queues {
		fmt.Fprintf(sb, "outpost_queue_depth{queue=%q} %d\n", q.Name, q.Depth)
	}
	sb.WriteString("# HELP outpost_queue_oldest_age_seconds Age of the oldest message in a queue.\n# TYPE outpost_queue_oldest_age_seconds gauge\n")
	for _, q := range queues {
		fmt.Fprintf(sb, "outpost_queue_oldest_age_seconds{queue=%q} %g\n", q.Name, q.OldestSeconds)
	}
	for _, m := range []struct {
		name string
		get  func(QueueStatus) int64
		help string
	}{
		{"expired", func(q QueueStatus) int64 { return q.Expired }, "expired in"},
		{"dropped", func(q QueueStatus) int64 { return q.Dropped }, "dropped (oldest first, at its cap) by"},
		{"rejected", func(q QueueStatus) int64 { return q.Rejected }, "rejected at its cap by"},
		{"no_space", func(q QueueStatus) int64 { return q.NoSpace }, "refused for disk space (below the reserve, since start) by"},
	} {
		fmt.Fprintf(sb, "# HELP outpost_queue_%s_total Messages %s a queue.\n# TYPE outpost_queue_%s_total counter\n", m.name, m.help, m.name)
		for _, q := range queues {
			fmt.Fprintf(sb, "outpost_queue_%s_total{queue=%q} %d\n", m.name, q.Name, m.get(q))
		}
	}
}

func writeModuleMetrics(sb *strings.Builder, modules map[string]supervisor.ModuleStatus) {
	names := slices.Sorted(maps.Keys(modules))
	sb.WriteString("# HELP outpost_module_running 1 while a module's process runs.\n# TYPE outpost_module_running gauge\n")
	for _, n := range names {
		running := 0
		if modules[n].RuntimeStatus == "running" {
			running = 1
		}
		fmt.Fprintf(sb, "outpost_module_running{module=%q} %d\n", n, running)
	}
	sb.WriteString("# HELP outpost_module_restarts Restarts of a module since its restart count was last reset.\n# TYPE outpost_module_restarts gauge\n")
	for _, n := range names {
		fmt.Fprintf(sb, "outpost_module_restarts{module=%q} %d\n", n, modules[n].RestartCount)
	}
}
