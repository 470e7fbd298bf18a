package broker

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-edge/outpost/store/queue"
)

// BenchmarkModuleToModule: module a sends QoS 1 outputs (16 unacknowledged
// at most) that a route takes to module b's input; reports routed msg/s end
// to end and the latency from publish to delivery, flat out (saturated) and
// paced at 10 000 msg/s. Broker, store (in memory) and both clients share
// the machine's cores.
func BenchmarkModuleToModule(b *testing.B) {
	b.Run("saturated", func(b *testing.B) { benchModuleToModule(b, 0) })
	b.Run("paced10k", func(b *testing.B) { benchModuleToModule(b, 10000) })
}

func benchModuleToModule(b *testing.B, rate int) {
	routes := `{"routes":{"ab":"FROM /messages/modules/a/outputs/* INTO BrokeredEndpoint(\"/modules/b/inputs/in1\")"}}`
	e := newEnv(b, routes, queue.Options{})
	a := e.client(edgeID+"/a", "pw")
	rx := e.client(edgeID+"/b", "pw")
	const n = 20000
	lat := make([]time.Duration, 0, n)
	done := make(chan struct{})
	if tok := rx.Subscribe("devices/"+edgeID+"/modules/b/#", 1, func(_ paho.Client, m paho.Message) {
		sent := time.Unix(0, int64(binary.BigEndian.Uint64(m.Payload())))
		lat = append(lat, time.Since(sent))
		if len(lat) == n {
			close(done)
		}
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		b.Fatal("subscribe failed")
	}
	topic := fmt.Sprintf("devices/%s/modules/a/messages/events/%%24.on=out1", edgeID)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		lat = lat[:0]
		done = make(chan struct{})
		start := time.Now()
		sem := make(chan struct{}, 16)
		for j := 0; j < n; j++ {
			if rate > 0 && j%10 == 0 { // pace in steps of 10 messages
				time.Sleep(time.Until(start.Add(time.Duration(j) * time.Second / time.Duration(rate))))
			}
			sem <- struct{}{}
			payload := binary.BigEndian.AppendUint64(make([]byte, 0, 100), uint64(time.Now().UnixNano()))
			payload = payload[:100]
			tok := a.Publish(topic, 1, false, payload)
			go func() { tok.Wait(); <-sem }()
		}
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			b.Fatalf("delivered %d of %d", len(lat), n)
		}
		elapsed := time.Since(start)
		slices.Sort(lat)
		b.ReportMetric(float64(n)/elapsed.Seconds(), "routed_msgs/s")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
	}
}

// BenchmarkIngestUpstream: one client sends QoS 1 messages (16
// unacknowledged at most) that a route stores for upstream; reports
// acknowledged msg/s, for IoT Hub telemetry and for a generic client on a
// free topic routed FROM /topics/ (which also pays the fan-out and the
// store barrier).
func BenchmarkIngestUpstream(b *testing.B) {
	b.Run("telemetry", func(b *testing.B) {
		e := newEnv(b, "", queue.Options{})
		benchIngest(b, e.client("dev1", "pw"), "devices/dev1/messages/events/")
	})
	b.Run("free_topic", func(b *testing.B) {
		e := newTopicEnv(b, topicRoutes, queue.Options{}, nil)
		c, err := e.dial311("plc-1", "plc", "pw")
		if err != nil {
			b.Fatal(err)
		}
		benchIngest(b, c, "factory/line1/temp")
	})
}

func benchIngest(b *testing.B, c paho.Client, topic string) {
	const n = 10000
	payload := make([]byte, 100)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		sem := make(chan struct{}, 16)
		for j := 0; j < n; j++ {
			sem <- struct{}{}
			tok := c.Publish(topic, 1, false, payload)
			go func() { tok.Wait(); <-sem }()
		}
		for j := 0; j < cap(sem); j++ {
			sem <- struct{}{}
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "acked_msgs/s")
	}
}
