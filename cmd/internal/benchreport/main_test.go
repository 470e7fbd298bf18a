package main

import (
	"strings"
	"testing"
)

// TestRatios: each Outpost run is held to Mosquitto's run of its case (or
// of the case whose load it shares), and the memory-budget case also to
// the same edge unconstrained in the same rounds.
func TestRatios(t *testing.T) {
	in := strings.Join([]string{
		`{"label":"ingest-10pub/mosquitto","msgs_per_s":100}`,
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
