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
