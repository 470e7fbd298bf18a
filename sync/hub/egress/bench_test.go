package egress

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkRouteToNATS: events/s routed to NATS from a hub under drain
// load. A hub on a durable store (fsynced per frame) takes an edge's
// frames of 50 events while the router publishes them to a JetStream
// stream (file storage) on a local nats-server. load: the frames are
// appended in a loop during the op, which ends when the route's cursor
// reaches the last event (the figure is the slower of the two rates);
// backlog: the events are in the log before the router starts, and the op
// is the router catching up.
func BenchmarkRouteToNATS(b *testing.B) {
	const perOp = 20000
	routes := func(url string) string {
		return fmt.Sprintf("[[endpoint]]\nname = \"js\"\ntype = \"nats\"\nurl = %q\nsubject = \"outpost.events\"\n[[route]]\nname = \"all\"\nquery = \"FROM /messages/* INTO js\"\n", url)
	}
	fill := func(th *testHub) {
		for range perOp / 50 {
			th.appendEvents(50, func(i int) int { return i % 40 })
		}
	}
	b.Run("load", func(b *testing.B) {
		ns := startNATS(b)
		ns.stream("outpost.events")
		th := openTestHub(b, "dev1", "dev2", "dev3", "dev4")
		r, _ := runRouter(b, th, routes(ns.URL), DialOptions{HubID: "bench"})
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			fill(th)
			last := th.h.LastSeq()
			waitFor(b, 5*time.Minute, "the route's cursor at the end of the log", func() bool { return r.cursorOf("js") == last })
		}
		report(b, time.Since(start), b.N*perOp)
	})
	b.Run("backlog", func(b *testing.B) {
		var elapsed time.Duration
		for range b.N {
			b.StopTimer()
			ns := startNATS(b)
			ns.stream("outpost.events")
			th := openTestHub(b, "dev1", "dev2", "dev3", "dev4")
			fill(th)
			last := th.h.LastSeq()
			b.StartTimer()
			start := time.Now()
			r, stop := runRouter(b, th, routes(ns.URL), DialOptions{HubID: "bench"})
			waitFor(b, 5*time.Minute, "the route's cursor at the end of the log", func() bool { return r.cursorOf("js") == last })
			elapsed += time.Since(start)
			b.StopTimer()
			stop()
			th.close()
			ns.stop()
		}
		report(b, elapsed, b.N*perOp)
	})
}

func report(b *testing.B, elapsed time.Duration, events int) {
	b.StopTimer()
	b.ReportMetric(float64(events)/elapsed.Seconds(), "events/s")
	b.ReportMetric(0, "ns/op")
}
