package membudget

// Sizes is how the edge spends its memory: the Go memory limit and the
// sizes of Badger's buffers on the Go heap (store/kv Options).
type Sizes struct {
	Budget  int64 // 0: none
	GoLimit int64 // the soft limit for debug.SetMemoryLimit
	// Badger (store/kv Options).
	MemTableSize   int64
	NumMemtables   int
	BaseTableSize  int64
	BlockCacheSize int64
	IndexCacheSize int64
}

const (
	// DefaultGoLimit is the Go memory limit without a budget: at 64 MiB
	// the collector ran all the time and halved ingest; 128 MiB costs
	// little on a gateway that sets no limit.
	DefaultGoLimit = 128 << 20
	// maxMemTable is the largest memtable a budget buys, today's default:
	// larger ones were not measured to help ingest, and an unconstrained
	// edge holding 1 000 000 messages is held to 64 MiB of anonymous memory.
	maxMemTable = 8 << 20
	minMemTable = 1 << 20
)

// Default is what the edge runs with when it has no budget: the sizes it
// always had (store/kv's defaults) and DefaultGoLimit.
var Default = Sizes{GoLimit: DefaultGoLimit, MemTableSize: 8 << 20, NumMemtables: 2, BaseTableSize: 2 << 20,
	BlockCacheSize: 8 << 20, IndexCacheSize: 4 << 20}

// Size spends a budget (bytes; 0: none, then Default). The reasoning:
//
//   - The sizes below are planned against half the budget ("planned"). The
//     cgroup also charges what Go does not see: the page cache of Badger's
//     memory-mapped files (its write-ahead log, value log and tables,
//     touched at every write), the goroutine stacks and the runtime's own
//     overhead, and the kernel's accounting of the process.
//   - The Go memory limit is five eighths of the budget: the planned half
//     and an eighth more as the collector's headroom, taken from the page
//     cache, which the kernel reclaims. Measured in a 64 MiB cgroup under 10
//     publishers (the edge unconstrained: 72k–78k msg/s in process
//     durability, 53k–54k in power), a 32 MiB limit collected every few
//     thousand messages (26 µs of CPU per message; 44k–47k and 27k–37k msg/s)
//     and 40 MiB kept 57k–67k and 40k–44k (16–17 µs), with no OOM kill;
//     44 MiB squeezed the page cache and gave less.
//   - Badger's buffers on the Go heap (BadgerHeap) get at most half the
//     planned heap. The other half is for the broker's per-connection
//     buffers and in-flight messages, the queues' and twins' state: a heap
//     whose live data sits at its limit is collected without pause, which
//     is how ingest fell to 1.9k msg/s in 64 MiB.
//   - The caches follow the planned heap (block cache 1/32 of it, 512 KiB
//     to 32 MiB; index cache 1/64, 256 KiB to 4 MiB). With no compression and
//     no encryption, Badger's cached blocks point into the mapped tables and
//     the index cache is not used, so they cost little heap; they are
//     counted at their full size anyway.
//   - The memtable is the largest power of two from 1 MiB to 8 MiB whose
//     buffers fit; two may wait for their flush, as today, and compactions
//     write tables half a memtable big (at most 2 MiB, today's). A smaller
//     memtable also bounds a transaction (15 % of it: about 3 000
//     operations at 2 MiB), which the queues' batches follow by themselves.
//     The value threshold stays 64 B: message bodies live in the value log
//     whatever the budget.
//
// Budgets from 512 MiB keep today's Badger sizes with a larger block
// cache; Floor (32 MiB) is the smallest budget whose sizes fit.
func Size(budget int64) Sizes {
	if budget <= 0 {
		return Default
	}
	planned := budget / 2 // the heap the sizes below are planned against
	s := Sizes{Budget: budget, GoLimit: budget * 5 / 8, NumMemtables: 2,
		BlockCacheSize: clamp(planned/32, 512<<10, 32<<20),
		IndexCacheSize: clamp(planned/64, 256<<10, 4<<20)}
	for m := int64(maxMemTable); ; m /= 2 {
		s.MemTableSize, s.BaseTableSize = m, min(2<<20, m/2)
		if m == minMemTable || s.BadgerHeap() <= planned/2 {
			return s
		}
	}
}

// BadgerHeap estimates the Go heap Badger holds with these sizes at its
// busiest: every memtable at once (those waiting for their flush and the
// one being written; Badger allocates each as an arena of about 1.3 times
// its size: the memtable plus room for one more batch), the flush's table
// builder (about one memtable), one table being built by each of the two
// compactors (buffered at twice the table's size), and both caches.
func (s Sizes) BadgerHeap() int64 {
	arena := s.MemTableSize * 13 / 10
	return int64(s.NumMemtables+1)*arena + s.MemTableSize + 2*2*s.BaseTableSize + s.BlockCacheSize + s.IndexCacheSize
}

func clamp(v, lo, hi int64) int64 { return max(lo, min(v, hi)) }
