package kv

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/outpost-edge/outpost/store/disk"
)

// On a full disk a commit that grows the store is refused before it reaches
// Badger; deletes and the queues' CommitAsync still run.
func TestFullDiskRefusesGrowingCommits(t *testing.T) {
	dir := t.TempDir()
	db := openT(t, dir+"/db", Options{})
	ctx := context.Background()
	if err := db.Commit(ctx, Set([]byte("k1"), []byte("v1"))); err != nil {
		t.Fatal(err)
	}
	db.Close()
	sp, err := disk.Statfs(dir)
	if err != nil {
		t.Fatal(err)
	}
	mon, err := disk.Open(disk.Options{Dir: dir, Store: dir + "/db", Allowance: sp.Avail + 1<<40})
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	db = openT(t, dir+"/db", Options{Space: mon})
	if err := db.Commit(ctx, Set([]byte("k2"), []byte("v2"))); !errors.Is(err, disk.ErrFull) {
		t.Fatalf("set on a full disk: %v, want disk.ErrFull", err)
	}
	if _, ok := get(t, db, "k2"); ok {
		t.Fatal("refused write is stored")
	}
	if err := db.Admit(Set([]byte("k3"), []byte("v3"))); !errors.Is(err, disk.ErrFull) {
		t.Fatalf("Admit of a set on a full disk: %v, want disk.ErrFull", err)
	}
	if err := db.Admit(Op{Key: []byte("k1"), Delete: true, Freed: 2}); err != nil {
		t.Fatalf("Admit of a delete on a full disk: %v", err)
	}
	if err := db.Commit(ctx, Op{Key: []byte("k1"), Delete: true, Freed: 2}); err != nil {
		t.Fatalf("delete on a full disk: %v", err)
	}
	done := make(chan error, 1)
	db.CommitAsync([]Op{Set([]byte("q"), []byte("ack meta"))}, func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatalf("queue commit on a full disk: %v", err)
	}
}

func TestAllowanceCoversMappedFiles(t *testing.T) {
	// 8 MiB memtables (16 MiB mapped WAL), 4 MiB value-log files (8 MiB
	// mapped): 16 + 8 + 8 (flush) + 16 (compaction) + 1 (discard stats).
	if got, want := Allowance(Options{}), int64(49<<20); got != want {
		t.Fatalf("Allowance = %d MiB, want %d MiB", got>>20, want>>20)
	}
}

// Reclaim on a disk without room for a second copy of the tables skips the
// flatten (it writes every table again before deleting any) and still runs
// value-log GC; with room it flattens.
func TestReclaimFlattensOnlyWithRoom(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	sp, err := disk.Statfs(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		allowance int64
		skipped   int64
	}{{"roomy", 1 << 20, 0}, {"full", sp.Avail + 1<<40, 1}} {
		t.Run(c.name, func(t *testing.T) {
			sub := t.TempDir()
			mon, err := disk.Open(disk.Options{Dir: sub, Store: sub + "/db", Allowance: c.allowance})
			if err != nil {
				t.Fatal(err)
			}
			defer mon.Close()
			db := openT(t, sub+"/db", Options{Space: mon})
			for i := range 100 {
				done := make(chan error, 1)
				db.CommitAsync([]Op{Set(fmt.Appendf(nil, "k%03d", i), []byte("value"))}, func(err error) { done <- err })
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
			if err := db.Reclaim(ctx); err != nil {
				t.Fatal(err)
			}
			if got := db.Stats().FlattensSkipped.Load(); got != c.skipped {
				t.Fatalf("flattens skipped %d, want %d", got, c.skipped)
			}
			if db.Stats().Reclaims.Load() != 1 {
				t.Fatal("reclaim not counted")
			}
		})
	}
}
