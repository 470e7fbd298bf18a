package client_test

import (
	"context"
	"encoding/json"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/outpost-edge/outpost/broker/client"
)

// A module started by the edge's supervisor: forward hot readings from
// input1 to output1, take its threshold from the module twin, report it
// back, and answer a direct method.
func ExampleFromEnvironment() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	c, err := client.FromEnvironment(client.WithLogger(logger))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	threshold := 25.0 // touched by the handlers only, which never run at once
	c.OnDesired(func(desired map[string]any, version int64) {
		if v, ok := desired["threshold"].(float64); ok {
			threshold = v
			_, _ = c.PatchReported(ctx, map[string]any{"threshold": v})
		}
	})
	c.OnInput("input1", func(m client.Message) {
		var r struct{ Temperature float64 }
		if json.Unmarshal(m.Body, &r) != nil || r.Temperature <= threshold {
			return // acknowledged and dropped
		}
		// The input is acknowledged after this returns: if the output is
		// not stored, the input comes again.
		_ = c.SendOutput(ctx, "output1", client.Message{
			Body: m.Body, ContentType: "application/json", ContentEncoding: "utf-8",
			Properties: map[string]string{"MessageType": "Alert"},
		})
	})
	c.OnMethod("ping", func([]byte) (int, []byte) { return 200, []byte(`"pong"`) })

	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	<-ctx.Done()
}

// A leaf device behind an edge sends telemetry and receives
// cloud-to-device messages.
func ExampleFromConnectionString() {
	ctx := context.Background()
	cs := "HostName=hub.example;DeviceId=sensor1;SharedAccessKey=c2VjcmV0c2VjcmV0c2VjcmV0;GatewayHostName=edge.local"
	c, err := client.FromConnectionString(cs, client.WithTokenTTL(24*time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	c.OnC2D(func(m client.Message) { log.Printf("command %s: %s", m.MessageID, m.Body) })
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	err = c.SendEvent(ctx, client.Message{
		Body:        []byte(`{"temperature":21.5}`),
		MessageID:   "reading-1",
		ContentType: "application/json", ContentEncoding: "utf-8",
		Properties: map[string]string{"unit": "celsius"},
	})
	if err != nil {
		log.Fatal(err)
	}
}

// Plain MQTT to an edge on the same host (its --mqtt listener), as tests
// and local tools do.
func ExampleWithBroker() {
	c, err := client.FromConnectionString(os.Getenv("DEVICE_CONNECTION_STRING"), client.WithBroker("tcp://127.0.0.1:1883"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err) // errors.Is(err, client.ErrRefused): wrong key or unknown identity
	}
	tw, err := c.GetTwin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("desired $version %d: %v", tw.DesiredVersion, tw.Desired)
}
