package main

import "testing"

// The deployment line says in words what became of the last deployment
// (it printed "version 0, 200 " for an edge that never had one).
func TestDeploymentLine(t *testing.T) {
	for _, tt := range []struct {
		version int64
		code    int
		desc    string
		want    string
	}{
		{0, 0, "", "none yet (outpost deploy, or --deployment FILE without a hub)"},
		{0, 200, "", "none yet (outpost deploy, or --deployment FILE without a hub)"},
		{3, 200, "", "version 3 applied (200)"},
		{4, 400, "deployment: modules.x: unknown field", "version 4: 400 deployment: modules.x: unknown field"},
		{5, 417, "", "version 5: 417"},
	} {
		if got := deploymentLine(tt.version, tt.code, tt.desc); got != tt.want {
			t.Errorf("deploymentLine(%d, %d, %q) = %q, want %q", tt.version, tt.code, tt.desc, got, tt.want)
		}
	}
}
