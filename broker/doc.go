// Package broker is the MQTT broker of the edge: mochi-mqtt with our hooks
// for authentication, ACL and the Azure IoT Hub topic conventions, durable
// ingest into store/queue before PUBACK, twins from store/twin, and
// deliveries to modules and devices driven from our own queues.
package broker
