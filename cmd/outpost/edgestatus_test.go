package main

import (
	"bytes"
	"regexp"
	"testing"

	"github.com/outpost-edge/outpost/cmd/internal/localapi"
)

// TestEdgeStatusTableHidesIdleLanes: edge status printed eleven
// $upstream/p0…p9, pdefault rows, nearly all empty; now the idle priority
// lanes are left out.
func TestEdgeStatusTableHidesIdleLanes(t *testing.T) {
	st := localapi.Status{DeviceID: "gw1", Link: "online"}
	st.Clock.Plausible = true
	for _, p := range []string{"p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "pdefault"} {
		st.Queues = append(st.Queues, localapi.QueueStatus{Name: "$upstream/" + p})
	}
	st.Queues[2].Depth = 4
	var out bytes.Buffer
	if err := printStatus(&out, st); err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile(`(?m)^\$upstream/\S+`).FindAllString(out.String(), -1)
	if len(rows) != 2 || rows[0] != "$upstream/p2" || rows[1] != "$upstream/pdefault" {
		t.Errorf("queue rows %q, want $upstream/p2 and $upstream/pdefault:\n%s", rows, out.String())
	}
}

// The memory line says the budget and where it came from, the Go limit in
// force and Badger's sizes.
func TestEdgeStatusMemoryLine(t *testing.T) {
	for _, c := range []struct {
		m    localapi.MemoryStatus
		want string
	}{
		{localapi.MemoryStatus{Budget: 64 << 20, Source: "cgroup v2 /sys/fs/cgroup/edge.slice/memory.max", GoLimit: 32 << 20, GoLimitFrom: "budget",
			MemTableSize: 2 << 20, NumMemtables: 2, BaseTableSize: 1 << 20, BlockCacheSize: 1 << 20, IndexCacheSize: 512 << 10},
			"memory: budget 64MiB (cgroup v2 /sys/fs/cgroup/edge.slice/memory.max); Go memory limit 32MiB (budget); Badger memtables 2 × 2MiB, tables 1MiB, block cache 1MiB, index cache 512KiB\n"},
		{localapi.MemoryStatus{Source: "none", GoLimit: 128 << 20, GoLimitFrom: "default",
			MemTableSize: 8 << 20, NumMemtables: 2, BaseTableSize: 2 << 20, BlockCacheSize: 8 << 20, IndexCacheSize: 4 << 20},
			"memory: no budget; Go memory limit 128MiB (default); Badger memtables 2 × 8MiB, tables 2MiB, block cache 8MiB, index cache 4MiB\n"},
		{localapi.MemoryStatus{}, ""}, // an older edge's status
	} {
		var out bytes.Buffer
		printMemory(&out, c.m)
		if out.String() != c.want {
			t.Errorf("memory line\n%q\nwant\n%q", out.String(), c.want)
		}
	}
}
