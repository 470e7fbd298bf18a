package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestRatios: each Outpost run is held to Mosquitto's run of its case (or
// of the case whose load it shares), and the memory-budget case also to
// the same edge unconstrained in the same rounds.
func TestRatios(t *testing.T) {
	in := strings.Join([]string{
		`{"label":"ingest-10pub/mosquitto","msgs_per_s":100}`,
		`{"label":"ingest-10pub/mosquitto-bare","msgs_per_s":160}`,
		`{"label":"ingest-10pub/outpost-process","msgs_per_s":80}`,
		`{"label":"ingest-10pub/outpost-process","msgs_per_s":90}`,
		`{"label":"ingest-10pub/outpost-process","msgs_per_s":70}`,
		`{"label":"budget64-10pub/outpost-process","msgs_per_s":72}`,
		`{"label":"generic-10pub/outpost-power","msgs_per_s":50}`,
	}, "\n")
	results := parse(strings.NewReader(in))
	addRatios(results)
	got := map[string]map[string][]float64{}
	for _, r := range results {
		got[r.name] = r.metrics
	}
	for _, c := range []struct {
		name, metric string
		want         float64
	}{
		{"ingest-10pub/outpost-process", "x_mosquitto", 0.8},
		{"ingest-10pub/outpost-process", "x_bare", 0.5},
		{"budget64-10pub/outpost-process", "x_mosquitto", 0.72},
		{"budget64-10pub/outpost-process", "x_unconstrained", 0.9},
		{"generic-10pub/outpost-power", "x_mosquitto", 0.5},
	} {
		v := got[c.name][c.metric]
		if len(v) != 1 || v[0] < c.want-1e-9 || v[0] > c.want+1e-9 {
			t.Errorf("%s %s = %v, want %v", c.name, c.metric, v, c.want)
		}
	}
	if _, ok := got["ingest-10pub/outpost-process"]["x_unconstrained"]; ok {
		t.Error("an unconstrained run got x_unconstrained")
	}
	for _, name := range []string{"budget64-10pub/outpost-process", "generic-10pub/outpost-power", "ingest-10pub/mosquitto-bare"} {
		if v, ok := got[name]["x_bare"]; ok {
			t.Errorf("%s got x_bare %v: only the ingest cases have a bare Mosquitto run", name, v)
		}
	}
}

// TestModuleToModule: a receiver's lines (mqttload -receive) make their own
// table of routed msg/s and latency, with no Mosquitto ratio, and leave the
// ingest table as it was.
func TestModuleToModule(t *testing.T) {
	in := strings.Join([]string{
		`{"label":"ingest-10pub/mosquitto","msgs_per_s":100,"delivered":90}`,
		`{"label":"ingest-10pub/outpost-process","msgs_per_s":80,"delivered":null}`,
		`{"label":"m2m-saturated/outpost-process","filter":"devices/gw1/modules/b/inputs/#","delivered":300000,"delivered_per_s":21000,` +
			`"latency_p50_ms":40,"latency_p90_ms":60,"latency_p99_ms":90,"latency_max_ms":120,"broker_us_per_msg":30,"broker_cpu_pct":70,"broker_rss_peak_mb":90}`,
		`{"label":"m2m-saturated/outpost-process","delivered_per_s":19000,"latency_p50_ms":50,"latency_p90_ms":70,"latency_p99_ms":100,"latency_max_ms":130}`,
		`{"label":"m2m-saturated/outpost-process","delivered_per_s":20000,"latency_p50_ms":45,"latency_p90_ms":65,"latency_p99_ms":95,"latency_max_ms":125}`,
		`{"label":"m2m-paced10k/outpost-power","delivered_per_s":9990,"latency_p50_ms":1.5,"latency_p90_ms":2.5,"latency_p99_ms":4.2,"latency_max_ms":9}`,
	}, "\n")
	results := parse(strings.NewReader(in))
	addRatios(results)
	got := map[string]*result{}
	for _, r := range results {
		got[r.name] = r
	}
	sat, paced, ingest := got["m2m-saturated/outpost-process"], got["m2m-paced10k/outpost-power"], got["ingest-10pub/outpost-process"]
	if sat == nil || paced == nil || ingest == nil {
		t.Fatalf("results: %v", got)
	}
	if sat.pkg != m2mPkg || paced.pkg != m2mPkg || ingest.pkg != loadPkg {
		t.Errorf("sections: m2m %q, %q; ingest %q", sat.pkg, paced.pkg, ingest.pkg)
	}
	if want := []string{"routed_msgs/s", "p50_ms", "p90_ms", "p99_ms", "max_ms", "broker_us_per_msg", "broker_cpu_pct", "broker_rss_peak_mb"}; strings.Join(sat.order, " ") != strings.Join(want, " ") {
		t.Errorf("m2m metrics = %v, want %v", sat.order, want)
	}
	if v := median(sat.metrics["routed_msgs/s"]); v != 20000 || len(sat.metrics["p99_ms"]) != 3 {
		t.Errorf("saturated: median %v routed msg/s over %d runs; want 20000 over 3", v, len(sat.metrics["p99_ms"]))
	}
	for _, r := range []*result{sat, paced} {
		if _, ok := r.metrics["x_mosquitto"]; ok {
			t.Errorf("%s has a Mosquitto ratio", r.name)
		}
		if _, ok := r.metrics["delivered"]; ok {
			t.Errorf("%s shows the delivered count, not the rate", r.name)
		}
	}
	if v := ingest.metrics["x_mosquitto"]; len(v) != 1 || v[0] != 0.8 {
		t.Errorf("ingest x_mosquitto = %v, want 0.8", v)
	}
	var md bytes.Buffer
	write(&md, results, "")
	for _, want := range []string{
		"\n## " + m2mPkg + "\n",
		"| m2m-saturated/outpost-process | 3 | 20000 [19000–21000] routed_msgs/s, 45.00 [40.00–50.00] p50_ms,",
		"| m2m-paced10k/outpost-power | 1 | 9990 routed_msgs/s, 1.50 p50_ms, 2.50 p90_ms, 4.20 p99_ms, 9.00 max_ms |",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown has no %q:\n%s", want, md.String())
		}
	}
}

// TestBudgetRatio: a go-bench "…/budget64" run is held to the median of
// the "…/unconstrained" runs of the same benchmark and package, on its
// drain rate; nothing else gets the ratio.
func TestBudgetRatio(t *testing.T) {
	in := strings.Join([]string{
		"pkg: edge: backlog",
		"BenchmarkBacklogBudget/unconstrained 1 1000000 queued 40000 drain_msgs/s 50 peak_anon_MB",
		"BenchmarkBacklogBudget/budget64 1 1000000 queued 30000 drain_msgs/s 30 peak_anon_MB",
		"BenchmarkBacklogBudget/unconstrained 1 1000000 queued 50000 drain_msgs/s 52 peak_anon_MB",
		"BenchmarkBacklogBudget/budget64 1 1000000 queued 36000 drain_msgs/s 31 peak_anon_MB",
		"BenchmarkBacklogBudget/unconstrained 1 1000000 queued 60000 drain_msgs/s 51 peak_anon_MB",
		"BenchmarkBacklogBudget/budget64 1 1000000 queued 42000 drain_msgs/s 33 peak_anon_MB",
		"pkg: other",
		"BenchmarkX/budget64 1 10 drain_msgs/s",
	}, "\n")
	results := parse(strings.NewReader(in))
	addRatios(results)
	got := map[string]map[string][]float64{}
	for _, r := range results {
		got[r.pkg+" "+r.name] = r.metrics
	}
	if v := got["edge: backlog BacklogBudget/budget64"]["x_unconstrained"]; len(v) != 1 || v[0] < 0.72-1e-9 || v[0] > 0.72+1e-9 {
		t.Errorf("budget64 x_unconstrained = %v, want [0.72] (36000/50000)", v)
	}
	if v, ok := got["edge: backlog BacklogBudget/unconstrained"]["x_unconstrained"]; ok {
		t.Errorf("the unconstrained run got x_unconstrained %v", v)
	}
	if v, ok := got["other X/budget64"]["x_unconstrained"]; ok {
		t.Errorf("a budget64 run without an unconstrained one in its package got x_unconstrained %v", v)
	}
}
