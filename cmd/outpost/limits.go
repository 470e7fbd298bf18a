package main

import (
	"flag"

	"github.com/outpost-edge/outpost/broker"
)

// mqttLimitFlags binds the broker's connection limits (docs/operations.md,
// "Connection limits") to flags of `outpost edge`.
func mqttLimitFlags(fs *flag.FlagSet, l *broker.Limits) {
	fs.DurationVar(&l.ConnectTimeout, "connect-timeout", broker.DefaultConnectTimeout,
		"time from accepting an MQTT connection to its authenticated CONNECT, TLS handshake and WebSocket upgrade included; then it is closed")
	fs.IntVar(&l.MaxConnections, "max-connections", broker.DefaultMaxConnections,
		"MQTT connections open at once on all listeners; more are closed at accept")
	fs.IntVar(&l.MaxPendingPerIP, "max-pending-per-ip", broker.DefaultMaxPendingPerIP,
		"MQTT connections from one IP address that have not authenticated yet (authenticated ones are never capped per address)")
	fs.IntVar(&l.MaxPreAuthBytes, "max-preauth-bytes", broker.DefaultMaxPreAuthBytes,
		"bytes a client may send before it is authenticated, its CONNECT included")
	fs.IntVar(&l.MaxSubscriptions, "max-subscriptions", broker.DefaultMaxSubscriptions,
		"topic filters one MQTT client may hold; the SUBACK refuses more")
	fs.IntVar(&l.MaxInflight, "max-inflight", broker.DefaultMaxInflight,
		"QoS 1 publishes one MQTT client may leave unacknowledged (MQTT 5 Receive Maximum); a client that sends more is disconnected")
}
