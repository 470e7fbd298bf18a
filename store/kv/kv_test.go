package kv

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

func openT(t *testing.T, dir string, o Options) *DB {
	t.Helper()
	db, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func get(t *testing.T, db *DB, key string) (string, bool) {
	t.Helper()
	var v []byte
	err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(key))
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(v), true
}

func TestCommitAndReopen(t *testing.T) {
	for _, d := range []Durability{Process, Power} {
		t.Run(d.String(), func(t *testing.T) {
			dir := t.TempDir()
			db := openT(t, dir, Options{Durability: d})
			ctx := context.Background()
			if err := db.Commit(ctx, Set([]byte("a"), []byte("1")), Set([]byte("b"), []byte("2"))); err != nil {
				t.Fatal(err)
			}
			if err := db.Commit(ctx, Del([]byte("a"))); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db2 := openT(t, dir, Options{Durability: d})
			if _, ok := get(t, db2, "a"); ok {
				t.Error("deleted key a is back after reopen")
			}
			if v, _ := get(t, db2, "b"); v != "2" {
				t.Errorf("b = %q after reopen, want 2", v)
			}
		})
	}
}

// Concurrent committers must share transactions: that is what makes a
// synced commit per message affordable.
func TestGroupCommit(t *testing.T) {
	db := openT(t, t.TempDir(), Options{Durability: Power})
	const writers, each = 16, 50
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				k := []byte(fmt.Sprintf("w%02d-%03d", w, i))
				if err := db.Commit(context.Background(), Set(k, k)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	commits, groups := db.Stats().Commits.Load(), db.Stats().Groups.Load()
	if commits != writers*each {
		t.Fatalf("commits = %d, want %d", commits, writers*each)
	}
	if groups >= commits {
		t.Errorf("%d commits took %d transactions: no grouping", commits, groups)
	}
	t.Logf("%d commits in %d groups", commits, groups)
	for w := 0; w < writers; w++ {
		k := fmt.Sprintf("w%02d-%03d", w, each-1)
		if v, ok := get(t, db, k); !ok || v != k {
			t.Errorf("%s missing", k)
		}
	}
}

// A request that is too big for one transaction fails alone; the requests
// grouped with it still commit.
func TestTooLargeFailsAlone(t *testing.T) {
	db := openT(t, "", Options{InMemory: true, MemTableSize: 1 << 20, ValueThreshold: 1 << 10})
	big := make([]Op, 0, 4000)
	for i := 0; i < 4000; i++ {
		big = append(big, Set([]byte(fmt.Sprintf("big%05d", i)), make([]byte, 512)))
	}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 1 {
				errs[i] = db.Commit(context.Background(), big...)
				return
			}
			errs[i] = db.Commit(context.Background(), Set([]byte(fmt.Sprint("small", i)), []byte("x")))
		}()
	}
	wg.Wait()
	if !errors.Is(errs[1], ErrTooLarge) {
		t.Errorf("big commit: %v, want ErrTooLarge", errs[1])
	}
	if errs[0] != nil || errs[2] != nil {
		t.Errorf("small commits failed: %v %v", errs[0], errs[2])
	}
	if _, ok := get(t, db, "big00000"); ok {
		t.Error("part of the failed commit was written")
	}
}

func TestCommitAfterClose(t *testing.T) {
	db, err := Open("", Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Commit(context.Background(), Set([]byte("k"), nil)); !errors.Is(err, ErrClosed) {
		t.Errorf("commit after close: %v, want ErrClosed", err)
	}
	done := make(chan error, 1)
	db.CommitAsync([]Op{Set([]byte("k"), nil)}, func(err error) { done <- err })
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("async commit after close: %v, want ErrClosed", err)
	}
}

func TestNewerFormatRefused(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir, Options{})
	v, _ := Marshal(uint64(formatVersion + 1))
	if err := db.Commit(context.Background(), Set(formatKey, v)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrFormat) {
		t.Fatalf("open newer format: %v, want ErrFormat", err)
	}
}

func TestParseDurability(t *testing.T) {
	for in, want := range map[string]Durability{"process": Process, "power": Power, "": Process} {
		if got, err := ParseDurability(in); err != nil || got != want {
			t.Errorf("ParseDurability(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseDurability("fsync"); err == nil {
		t.Error("ParseDurability(fsync) accepted")
	}
}

func TestPrefixEnd(t *testing.T) {
	cases := []struct{ in, want []byte }{
		{[]byte{'q', 1}, []byte{'q', 2}},
		{[]byte{'q', 0xff}, []byte{'r'}},
		{[]byte{0xff, 0xff}, nil},
	}
	for _, c := range cases {
		if got := PrefixEnd(c.in); string(got) != string(c.want) {
			t.Errorf("PrefixEnd(%x) = %x, want %x", c.in, got, c.want)
		}
	}
}

// Deleting what was written must give the disk back once reclaimed.
func TestReclaimGivesDiskBack(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 50 MB")
	}
	dir := t.TempDir()
	db := openT(t, dir, Options{})
	ctx := context.Background()
	const n, size = 200_000, 256
	val := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{1})
	for i := 0; i < n; i += 1000 {
		ops := make([]Op, 0, 1000)
		for j := i; j < i+1000; j++ {
			_, _ = rng.Read(val) // incompressible, like real payloads
			ops = append(ops, Set(AppendUint64([]byte{PrefixQueueMsg}, uint64(j)), append([]byte(nil), val...)))
		}
		if err := db.Commit(ctx, ops...); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Reclaim(ctx); err != nil {
		t.Fatal(err)
	}
	full := DirBytes(t, dir)
	for i := 0; i < n; i += 1000 {
		ops := make([]Op, 0, 1000)
		for j := i; j < i+1000; j++ {
			ops = append(ops, Op{Key: AppendUint64([]byte{PrefixQueueMsg}, uint64(j)), Delete: true, Freed: size})
		}
		if err := db.Commit(ctx, ops...); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Reclaim(ctx); err != nil {
		t.Fatal(err)
	}
	empty := DirBytes(t, dir)
	t.Logf("disk with %d×%d B: %d B; after delete and reclaim: %d B", n, size, full, empty)
	if empty > full/4 {
		t.Errorf("after deleting everything the store still uses %d of %d bytes", empty, full)
	}
}

// DirBytes sums the allocated size of the files in dir (sparse files count by
// what they really occupy).
func DirBytes(t testing.TB, dir string) int64 {
	t.Helper()
	n, err := DiskUsage(dir)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDiskUsageCountsAllocation(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if n := DirBytes(t, dir); n > 1<<20 {
		t.Errorf("a sparse 1 GiB file counted as %d bytes", n)
	}
}

// The memory sizes an edge picks from its budget reach Badger; zero
// fields keep the gateway defaults.
func TestMemorySizes(t *testing.T) {
	for _, c := range []struct {
		name string
		in   Options
		want Options
	}{
		{"defaults", Options{}, Options{MemTableSize: 8 << 20, NumMemtables: 2, BaseTableSize: 2 << 20, BlockCacheSize: 8 << 20, IndexCacheSize: 4 << 20}},
		{"sized", Options{MemTableSize: 2 << 20, NumMemtables: 3, BaseTableSize: 1 << 20, BlockCacheSize: 1 << 20, IndexCacheSize: 512 << 10},
			Options{MemTableSize: 2 << 20, NumMemtables: 3, BaseTableSize: 1 << 20, BlockCacheSize: 1 << 20, IndexCacheSize: 512 << 10}},
	} {
		t.Run(c.name, func(t *testing.T) {
			db := openT(t, t.TempDir(), c.in)
			got, bo := db.Options(), db.Badger().Opts()
			if got.MemTableSize != c.want.MemTableSize || got.NumMemtables != c.want.NumMemtables || got.BaseTableSize != c.want.BaseTableSize ||
				got.BlockCacheSize != c.want.BlockCacheSize || got.IndexCacheSize != c.want.IndexCacheSize {
				t.Errorf("Options() = %+v, want the sizes of %+v", got, c.want)
			}
			if bo.MemTableSize != c.want.MemTableSize || bo.NumMemtables != c.want.NumMemtables || bo.BaseTableSize != c.want.BaseTableSize ||
				bo.BlockCacheSize != c.want.BlockCacheSize || bo.IndexCacheSize != c.want.IndexCacheSize {
				t.Errorf("Badger opened with memtable %d ×%d, tables %d, block cache %d, index cache %d; want those of %+v",
					bo.MemTableSize, bo.NumMemtables, bo.BaseTableSize, bo.BlockCacheSize, bo.IndexCacheSize, c.want)
			}
		})
	}
}
