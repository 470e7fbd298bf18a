package edge

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/outpost-edge/outpost/cmd/internal/localapi"
	"github.com/outpost-edge/outpost/cmd/internal/membudget"
	"github.com/outpost-edge/outpost/store/disk"
	"github.com/outpost-edge/outpost/store/kv"
)

// memory is how the edge spends its memory budget.
type memory struct {
	budget membudget.Budget
	sizes  membudget.Sizes
	// goLimitFrom: "budget", "default" or "GOMEMLIMIT".
	goLimitFrom string
}

// planMemory picks the budget (--memory-budget, else the cgroup's memory
// limit read from cfg.Cgroups) and sizes the edge from it. A budget below
// membudget.Floor is refused. A cgroup limit that cannot be read is
// logged, and the edge runs without a budget, as it always did.
func planMemory(cfg Config) (memory, error) {
	b := membudget.Budget{Bytes: cfg.MemoryBudget, Source: "--memory-budget"}
	if cfg.MemoryBudget == 0 {
		fsys := cfg.Cgroups
		if fsys == nil {
			fsys = os.DirFS("/")
		}
		var err error
		if b, err = membudget.Detect(fsys); err != nil {
			cfg.Logger.Warn("no memory budget: the cgroup's memory limit could not be read; pass --memory-budget SIZE", "err", err)
			b = membudget.Budget{}
		}
	}
	if err := membudget.Check(b); err != nil {
		return memory{}, err
	}
	return memory{budget: b, sizes: membudget.Size(b.Bytes)}, nil
}

// apply sets the Go memory limit, unless GOMEMLIMIT is set: the runtime
// took that one at start, and the operator's word wins. It logs the plan.
func (m *memory) apply(log *slog.Logger) {
	switch {
	case os.Getenv("GOMEMLIMIT") != "":
		m.goLimitFrom = "GOMEMLIMIT"
	case m.budget.Bytes == 0:
		m.goLimitFrom = "default"
		debug.SetMemoryLimit(m.sizes.GoLimit)
	default:
		m.goLimitFrom = "budget"
		debug.SetMemoryLimit(m.sizes.GoLimit)
	}
	st := m.status(m.kvSizes(kv.Options{}))
	log.Info("memory", "budget", disk.FormatSize(st.Budget), "source", st.Source,
		"go_memory_limit", disk.FormatSize(st.GoLimit), "go_memory_limit_from", st.GoLimitFrom,
		"memtables", fmt.Sprintf("%d × %s", st.NumMemtables, disk.FormatSize(st.MemTableSize)),
		"table_size", disk.FormatSize(st.BaseTableSize), "block_cache", disk.FormatSize(st.BlockCacheSize),
		"index_cache", disk.FormatSize(st.IndexCacheSize))
}

// kvSizes puts the planned Badger sizes into o.
func (m *memory) kvSizes(o kv.Options) kv.Options {
	s := m.sizes
	o.MemTableSize, o.NumMemtables, o.BaseTableSize = s.MemTableSize, s.NumMemtables, s.BaseTableSize
	o.BlockCacheSize, o.IndexCacheSize = s.BlockCacheSize, s.IndexCacheSize
	return o
}

// status reports the plan with the Go limit in force, read back from the
// runtime, and the sizes the store was opened with (kvo).
func (m *memory) status(kvo kv.Options) localapi.MemoryStatus {
	src := m.budget.Source
	if m.budget.Bytes == 0 {
		src = "none"
	}
	return localapi.MemoryStatus{Budget: m.budget.Bytes, Source: src, GoLimit: debug.SetMemoryLimit(-1), GoLimitFrom: m.goLimitFrom,
		MemTableSize: kvo.MemTableSize, NumMemtables: kvo.NumMemtables, BaseTableSize: kvo.BaseTableSize,
		BlockCacheSize: kvo.BlockCacheSize, IndexCacheSize: kvo.IndexCacheSize}
}
