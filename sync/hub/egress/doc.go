// Package egress is the hub's message routing: it hands the hub's event
// log to streaming engines (NATS JetStream, Kafka) and HTTPS webhooks, as
// IoT Hub's message routing hands events to Event Hubs and Service Bus.
//
// A routes file (ParseConfig) names endpoints and routes; a route is
// FROM /messages/… [WHERE <condition>] INTO <endpoint>, its source and
// condition in broker/route's language, the one edge routes use.
//
// Delivery is at least once and in hub order, every delivery carrying the
// event's seq so consumers de-duplicate. Each endpoint has its own
// goroutine (started by Router.Run, waited for before it returns) and its
// own cursor, committed through the hub's state machine (hub.SetRouteCursors)
// in batches: a restarted hub, or a cluster's next leader, resumes from the
// last cursor committed. Only the node that leads delivers. A slow or dead
// endpoint holds back only its own cursor; events that expire from the log
// under it are skipped, counted and logged, never waited for.
package egress
