package membudget

import (
	"testing"
)

// The sizes fit the budget they come from: Badger's buffers take at most a
// quarter of the budget (half the heap they are planned against), and the
// Go limit is five eighths of the budget.
func TestSizeFits(t *testing.T) {
	for _, b := range []int64{Floor, 48 << 20, 64 << 20, 100 << 20, 128 << 20, 256 << 20, 512 << 20, 1 << 30, 4 << 30, 64 << 30} {
		s := Size(b)
		if s.Budget != b || s.GoLimit != b*5/8 {
			t.Errorf("%d MiB: budget %d, Go limit %d; want the budget and five eighths of it", b>>20, s.Budget, s.GoLimit)
		}
		if h := s.BadgerHeap(); h > b/4 {
			t.Errorf("%d MiB: Badger's buffers %d bytes, over a quarter of the budget (%d)", b>>20, h, b/4)
		}
		if s.MemTableSize < 1<<20 || s.NumMemtables < 2 || s.BaseTableSize < 512<<10 || s.BlockCacheSize <= 0 || s.IndexCacheSize <= 0 {
			t.Errorf("%d MiB: %+v has a size below what Badger works with", b>>20, s)
		}
	}
}

// A larger budget never buys a smaller size.
func TestSizeMonotone(t *testing.T) {
	prev := Size(Floor)
	for b := int64(Floor); b <= 8<<30; b += b / 8 {
		s := Size(b)
		if s.GoLimit < prev.GoLimit || s.MemTableSize < prev.MemTableSize || s.NumMemtables < prev.NumMemtables ||
			s.BaseTableSize < prev.BaseTableSize || s.BlockCacheSize < prev.BlockCacheSize || s.IndexCacheSize < prev.IndexCacheSize {
			t.Fatalf("%d bytes: %+v, smaller than %+v at a smaller budget", b, s, prev)
		}
		prev = s
	}
}

// The sizing table of docs/operations.md, "Memory"; no budget is what the
// edge always ran with.
func TestSizeTable(t *testing.T) {
	const k, m = 1 << 10, 1 << 20
	for _, c := range []struct {
		budget int64
		want   Sizes
	}{
		{0, Sizes{GoLimit: 128 * m, MemTableSize: 8 * m, NumMemtables: 2, BaseTableSize: 2 * m, BlockCacheSize: 8 * m, IndexCacheSize: 4 * m}},
		{64 * m, Sizes{Budget: 64 * m, GoLimit: 40 * m, MemTableSize: 2 * m, NumMemtables: 2, BaseTableSize: 1 * m, BlockCacheSize: 1 * m, IndexCacheSize: 512 * k}},
		{128 * m, Sizes{Budget: 128 * m, GoLimit: 80 * m, MemTableSize: 4 * m, NumMemtables: 2, BaseTableSize: 2 * m, BlockCacheSize: 2 * m, IndexCacheSize: 1 * m}},
		{512 * m, Sizes{Budget: 512 * m, GoLimit: 320 * m, MemTableSize: 8 * m, NumMemtables: 2, BaseTableSize: 2 * m, BlockCacheSize: 8 * m, IndexCacheSize: 4 * m}},
		{4096 * m, Sizes{Budget: 4096 * m, GoLimit: 2560 * m, MemTableSize: 8 * m, NumMemtables: 2, BaseTableSize: 2 * m, BlockCacheSize: 32 * m, IndexCacheSize: 4 * m}},
	} {
		if got := Size(c.budget); got != c.want {
			t.Errorf("Size(%d MiB) = %+v, want %+v", c.budget>>20, got, c.want)
		}
	}
	if Size(0) != Default {
		t.Errorf("no budget: %+v, want Default %+v", Size(0), Default)
	}
}
