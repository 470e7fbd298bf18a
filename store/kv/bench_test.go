package kv

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkCommit measures commits/s of 100-byte single-key commits with 1
// and 16 concurrent committers: the group commit is what lets 16 writers
// share one sync in power mode.
func BenchmarkCommit(b *testing.B) {
	for _, d := range []Durability{Process, Power} {
		for _, writers := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/writers=%d", d, writers), func(b *testing.B) {
				db, err := Open(b.TempDir(), Options{Durability: d})
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				val := make([]byte, 100)
				var next atomic.Uint64
				var wg sync.WaitGroup
				start := time.Now()
				b.ResetTimer()
				for w := 0; w < writers; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := next.Add(1)
							if i > uint64(b.N) {
								return
							}
							if err := db.Commit(context.Background(), Set(AppendUint64([]byte{PrefixQueueMsg}, i), val)); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "commits/s")
				b.ReportMetric(float64(b.N)/float64(db.Stats().Groups.Load()), "commits/txn")
			})
		}
	}
}
