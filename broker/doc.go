// Package broker is the MQTT broker of the edge: mochi-mqtt with our hooks
// for authentication, ACL and the Azure IoT Hub topic conventions, durable
// ingest into store/queue before PUBACK, twins from store/twin, and
// deliveries to modules and devices driven from our own queues.
//
// Sessions end with their credentials (ending.go): a timer per session
// whose SAS token expires, and, for each session ended, a goroutine that
// closes it (at most disconnectWait), which Close waits for.
package broker
