package hub

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/sync/hub/query"
)

// BenchmarkQuery100k: IoT Hub queries (POST /devices/query's Hub.Query)
// over 100 000 device twins with tags, one page of each: a point lookup by
// deviceId, a tag condition that one twin in ten matches (a page of 100),
// one that none matches (the whole fleet read), COUNT and GROUP BY.
func BenchmarkQuery100k(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	h, err := Open(ctx, "", Options{HostName: "hub.bench", OwnerKey: ownerKey, InMemory: true, PullWait: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { h.Stop(); _ = h.Close() }()
	start := time.Now()
	for i := 0; i < n; i += 1000 {
		cmd := putIdentities{}
		for j := i; j < i+1000; j++ {
			cmd.IDs = append(cmd.IDs, identity.Identity{DeviceID: fmt.Sprintf("d%06d", j), Status: identity.Enabled, Generation: "g",
				Auth: identity.Auth{Type: identity.AuthSAS, PrimaryKey: []byte("k1"), SecondaryKey: []byte("k2")}})
		}
		if err := h.apply(ctx, cmd); err != nil {
			b.Fatal(err)
		}
	}
	for j := range n {
		env := "dev"
		if j%2 == 0 {
			env = "prod"
		}
		tags := fmt.Sprintf(`{"site":"s%d","env":"%s"}`, j%10, env)
		if _, err := h.fsm.twins.PatchTags(ctx, fmt.Sprintf("d%06d", j), []byte(tags)); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("%d twins in %s", n, time.Since(start).Round(time.Millisecond))
	for _, c := range []struct{ name, sql string }{
		{"point", "SELECT * FROM devices WHERE deviceId = 'd050000'"},
		{"tag-page100", "SELECT * FROM devices WHERE tags.site = 's7'"},
		{"tag-none", "SELECT * FROM devices WHERE tags.site = 'nowhere'"},
		{"count", "SELECT COUNT() AS n FROM devices WHERE tags.env = 'prod'"},
		{"group-by", "SELECT tags.site, COUNT() AS n FROM devices GROUP BY tags.site"},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				res, _, err := h.Query(c.sql, query.Page{Max: 100})
				if err != nil || (c.name != "tag-none" && len(res.Items) == 0) {
					b.Fatalf("%s: %d items, %v", c.sql, len(res.Items), err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/query")
		})
	}
}
