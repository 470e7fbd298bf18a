// Package client is the Go SDK for modules and devices of an outpost edge
// (or of any broker speaking the Azure IoT Hub MQTT conventions,
// CONTRACT.md §4): telemetry and module outputs, module inputs,
// cloud-to-device messages, twins and direct methods, over MQTT 3.1.1 with
// SAS token authentication.
//
// A module run by the edge's supervisor:
//
//	c, err := client.FromEnvironment(client.WithLogger(logger))
//	if err != nil {
//		return err // not started by an edge: the error names the variables
//	}
//	defer c.Close()
//	c.OnInput("input1", func(m client.Message) {
//		// handled one at a time, acknowledged when this returns
//		_ = c.SendOutput(ctx, "output1", client.Message{Body: m.Body, ContentType: "application/json"})
//	})
//	c.OnDesired(func(desired map[string]any, version int64) { … })
//	c.OnMethod("reset", func(payload []byte) (int, []byte) { return 200, []byte(`{"ok":true}`) })
//	if err := c.Connect(ctx); err != nil {
//		return err
//	}
//
// A leaf device uses FromConnectionString with its connection string; with
// GatewayHostName it connects to that edge.
//
// # Connection
//
// The client id is "d" or "d/m", the username
// "<HostName>/<d>[/<m>]/?api-version=2021-04-12", and the password a SAS
// token for "<HostName>/devices/<d>[/modules/<m>]" signed with the key of
// the connection string; every connection gets a new token (WithTokenTTL,
// 1 h by default), and a connection is renewed before its token expires.
// Connect returns a refusal of the credentials at once; once connected,
// the client reconnects after any loss, forever, with jittered exponential
// backoff (WithBackoff, 100 ms to 10 s by default). Every connection
// subscribes again to what the handlers need and, with an OnDesired
// handler, reads the full twin, so nothing depends on the broker keeping
// session state.
//
// # Delivery
//
// Inputs and C2D messages are acknowledged after their handler returns:
// a message whose handler did not finish (a crash, a lost connection) is
// delivered again. Delivery is therefore at least once; MessageID tells
// repeats apart. SendEvent and SendOutput return once the broker
// acknowledged the message (stored it durably, on an outpost edge).
//
// # Goroutines
//
// Connect starts the reconnection loop and three handler goroutines (one
// each for messages, desired changes and direct methods, so a slow method
// never delays inputs); paho's goroutines run per connection. Close waits
// for all of them.
package client
