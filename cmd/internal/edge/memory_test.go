package edge

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/localapi"
	"github.com/outpost-edge/outpost/cmd/internal/membudget"
	"github.com/outpost-edge/outpost/store/kv"
)

// keepMemoryLimit restores the process's Go memory limit (process-wide)
// and runs the test without GOMEMLIMIT.
func keepMemoryLimit(t *testing.T) {
	t.Helper()
	t.Setenv("GOMEMLIMIT", "")
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
}

func cgroupV2(limit string) fstest.MapFS {
	return fstest.MapFS{
		"proc/self/cgroup":                            {Data: []byte("0::/edge.slice\n")},
		"sys/fs/cgroup/edge.slice/memory.max":         {Data: []byte(limit + "\n")},
		"sys/fs/cgroup/edge.slice/memory.high":        {Data: []byte("max\n")},
		"sys/fs/cgroup/edge.slice/cgroup.controllers": {Data: []byte("memory\n")},
	}
}

// Must show (issue 17): an edge started with --memory-budget 64MiB sets
// the Go memory limit to half of it, opens Badger with the sized options,
// and its status says so.
func TestMemoryBudgetSizesTheEdge(t *testing.T) {
	keepMemoryLimit(t)
	debug.SetMemoryLimit(1 << 40) // whatever the process had: the edge must set its own
	dir := filepath.Join(t.TempDir(), "edge")
	var logs bytes.Buffer
	stop := runEdge(t, Config{DataDir: dir, MemoryBudget: 64 << 20, Cgroups: cgroupV2("1073741824"),
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	c, err := localapi.ClientFromData(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status()
	if err != nil {
		t.Fatal(err)
	}
	want := membudget.Size(64 << 20)
	if got := debug.SetMemoryLimit(-1); got != 40<<20 || got != want.GoLimit {
		t.Errorf("Go memory limit %d, want five eighths of the budget, %d", got, want.GoLimit)
	}
	m := st.Memory
	if m.Budget != 64<<20 || m.Source != "--memory-budget" || m.GoLimit != 40<<20 || m.GoLimitFrom != "budget" {
		t.Errorf("status memory %+v: want the 64 MiB budget from --memory-budget and a 40 MiB Go limit set by it", m)
	}
	if m.MemTableSize != want.MemTableSize || m.NumMemtables != want.NumMemtables || m.BaseTableSize != want.BaseTableSize ||
		m.BlockCacheSize != want.BlockCacheSize || m.IndexCacheSize != want.IndexCacheSize || m.MemTableSize != 2<<20 {
		t.Errorf("status memory %+v: want Badger opened with %+v", m, want)
	}
	stop()
	if !strings.Contains(logs.String(), "msg=memory budget=64MiB source=--memory-budget go_memory_limit=40MiB") {
		t.Errorf("no start line with the memory plan in the log:\n%s", logs.String())
	}
}

// Without --memory-budget, the cgroup's limit is the budget; without
// either, the edge runs as it always did.
func TestMemoryPlan(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, c := range []struct {
		name      string
		cfg       Config
		want      membudget.Budget
		wantLimit int64
	}{
		{"flag", Config{MemoryBudget: 128 << 20, Cgroups: cgroupV2("67108864")}, membudget.Budget{Bytes: 128 << 20, Source: "--memory-budget"}, 80 << 20},
		{"cgroup v2", Config{Cgroups: cgroupV2("67108864")}, membudget.Budget{Bytes: 64 << 20, Source: "cgroup v2 /sys/fs/cgroup/edge.slice/memory.max"}, 40 << 20},
		{"cgroup without a limit", Config{Cgroups: cgroupV2("max")}, membudget.Budget{}, 128 << 20},
		{"unreadable limit: none, as before", Config{Cgroups: cgroupV2("a lot")}, membudget.Budget{}, 128 << 20},
		{"no cgroup", Config{Cgroups: fstest.MapFS{}}, membudget.Budget{}, 128 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			keepMemoryLimit(t)
			c.cfg.Logger = log
			m, err := planMemory(c.cfg)
			if err != nil || m.budget != c.want {
				t.Fatalf("planMemory = %+v, %v; want %+v", m.budget, err, c.want)
			}
			m.apply(log)
			if got := debug.SetMemoryLimit(-1); got != c.wantLimit {
				t.Errorf("Go memory limit %d, want %d", got, c.wantLimit)
			}
		})
	}
}

// No budget keeps today's Badger sizes exactly: store/kv's defaults.
func TestNoBudgetKeepsTodaysSizes(t *testing.T) {
	m := memory{sizes: membudget.Size(0)}
	got := m.kvSizes(kv.Options{})
	db, err := kv.Open("", kv.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	def := db.Options()
	if got.MemTableSize != def.MemTableSize || got.NumMemtables != def.NumMemtables || got.BaseTableSize != def.BaseTableSize ||
		got.BlockCacheSize != def.BlockCacheSize || got.IndexCacheSize != def.IndexCacheSize {
		t.Errorf("no budget: %+v, want store/kv's defaults %+v", got, def)
	}
	if membudget.Size(0).GoLimit != 128<<20 {
		t.Errorf("no budget: Go limit %d, want 128 MiB", membudget.Size(0).GoLimit)
	}
}

// GOMEMLIMIT still sets the Go limit; the budget sizes Badger.
func TestGOMEMLIMITWins(t *testing.T) {
	keepMemoryLimit(t)
	t.Setenv("GOMEMLIMIT", "100MiB")
	debug.SetMemoryLimit(100 << 20) // what the runtime did at start
	m, err := planMemory(Config{MemoryBudget: 64 << 20, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	m.apply(slog.New(slog.DiscardHandler))
	st := m.status(m.kvSizes(kv.Options{}))
	if st.GoLimit != 100<<20 || st.GoLimitFrom != "GOMEMLIMIT" || st.MemTableSize != 2<<20 {
		t.Errorf("status memory %+v: want GOMEMLIMIT's 100 MiB and Badger sized from the 64 MiB budget", st)
	}
}

// A budget below the floor, from the flag or the cgroup, stops the edge
// before it touches anything, with the minimum in the error.
func TestMemoryBudgetBelowFloor(t *testing.T) {
	for _, cfg := range []Config{{MemoryBudget: 16 << 20}, {Cgroups: cgroupV2("16777216")}} {
		keepMemoryLimit(t)
		before := debug.SetMemoryLimit(-1)
		dir := filepath.Join(t.TempDir(), "edge")
		cfg.DataDir, cfg.ConnectionString, cfg.Logger = dir, testConnString, slog.New(slog.DiscardHandler)
		err := Run(context.Background(), cfg)
		if !errors.Is(err, membudget.ErrBelowFloor) || !strings.Contains(err.Error(), "at least 32 MiB") {
			t.Errorf("Run with a 16 MiB budget: %v, want ErrBelowFloor with the minimum", err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the data directory was made (%v): the budget is checked first", err)
		}
		if got := debug.SetMemoryLimit(-1); got != before {
			t.Errorf("Go memory limit changed to %d by an edge that refused to start", got)
		}
	}
}

var testConnString = "HostName=hub.example;DeviceId=gw1;SharedAccessKey=" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))

// runEdge starts a standalone edge on loopback and waits for ready.json;
// stop ends it and waits.
func runEdge(t *testing.T, cfg Config) (stop func()) {
	t.Helper()
	cfg.ConnectionString, cfg.HubURL, cfg.MQTT, cfg.API, cfg.Stdout = testConnString, "off", "127.0.0.1:0", "127.0.0.1:0", io.Discard
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("edge: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(cfg.DataDir, "ready.json")); err == nil {
			return stop
		}
		select {
		case err := <-done:
			stopped = true
			t.Fatalf("edge stopped before it was ready: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the edge did not write ready.json in 20 s")
		}
	}
}
