package demo

import (
	"slices"
	"testing"
)

// TestCompareTwins: what the demo calls converged — the same twin at the
// hub and at the edge, apart from each replica's $-keys, and a device
// that reported back the desired properties it received.
func TestCompareTwins(t *testing.T) {
	twin := func(desired, reported string) []byte {
		return []byte(`{"deviceId":"leaf-1","tags":{},"properties":{"desired":` + desired + `,"reported":` + reported + `}}`)
	}
	for _, tt := range []struct {
		name      string
		hub, edge []byte
		pending   []string
		followed  bool
		converged bool
	}{
		{"same, versions apart", twin(`{"setpoint":21,"$version":7}`, `{"received":{"setpoint":21},"$version":3}`),
			twin(`{"setpoint":21,"$version":2}`, `{"received":{"setpoint":21},"$version":9}`), nil, true, true},
		{"empty", twin(`{}`, `{}`), twin(`{"$version":1}`, `{}`), nil, true, true},
		{"desired not at the edge yet", twin(`{"setpoint":22}`, `{"received":{"setpoint":21}}`),
			twin(`{"setpoint":21}`, `{"received":{"setpoint":21}}`), []string{"desired.setpoint hub→edge"}, false, false},
		{"reported not at the hub yet", twin(`{"setpoint":22}`, `{"received":{"setpoint":21}}`),
			twin(`{"setpoint":22}`, `{"received":{"setpoint":22},"note":"x"}`),
			[]string{"reported.note edge→hub", "reported.received edge→hub"}, false, false},
		{"equal but not followed", twin(`{"setpoint":22}`, `{}`), twin(`{"setpoint":22}`, `{}`), nil, false, false},
		{"a key only at the edge", twin(`{}`, `{}`), twin(`{"stale":1}`, `{}`), []string{"desired.stale hub→edge"}, true, false},
		{"nested values compared whole", twin(`{"a":{"b":1}}`, `{"received":{"a":{"b":1}}}`),
			twin(`{"a":{"b":2}}`, `{"received":{"a":{"b":1}}}`), []string{"desired.a hub→edge"}, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := compareTwins("leaf-1", tt.hub, tt.edge)
			if !slices.Equal(got.Pending, tt.pending) || got.Followed != tt.followed || got.Converged() != tt.converged || got.Err != "" {
				t.Errorf("got %+v (converged %v), want pending %q, followed %v, converged %v", got, got.Converged(), tt.pending, tt.followed, tt.converged)
			}
		})
	}
	if got := compareTwins("leaf-1", []byte(`<html>`), twin(`{}`, `{}`)); got.Err == "" || got.Converged() {
		t.Errorf("a hub answer that is not a twin: %+v", got)
	}
}
