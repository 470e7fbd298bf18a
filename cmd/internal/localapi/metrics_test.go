package localapi

import (
	"strings"
	"testing"
)

// What the disk refused is in /metrics, not only in /status: refused
// telemetry and writes, and each queue's appends refused for space.
func TestMetricsCountDiskRefusals(t *testing.T) {
	var sb strings.Builder
	writeMetrics(&sb, Status{
		Disk:   DiskStatus{State: "telemetry-refused", RefusedTelemetry: 7, RefusedWrites: 2},
		Queues: []QueueStatus{{Name: "$upstream/pdefault", NoSpace: 5}},
	})
	for _, want := range []string{
		"outpost_disk_refused_telemetry_total 7\n",
		"outpost_disk_refused_writes_total 2\n",
		`outpost_queue_no_space_total{queue="$upstream/pdefault"} 5` + "\n",
		`outpost_disk_state{state="telemetry-refused"} 1` + "\n",
	} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// The edge's goroutines are a gauge in /metrics (the soak benchmark and an
// operator's dashboard watch it for leaks).
func TestMetricsGoroutines(t *testing.T) {
	var sb strings.Builder
	writeMetrics(&sb, Status{Goroutines: 42})
	if !strings.Contains(sb.String(), "# TYPE go_goroutines gauge\ngo_goroutines 42\n") {
		t.Errorf("metrics lack the goroutine gauge:\n%s", sb.String())
	}
}
