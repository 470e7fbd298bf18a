// Package broker will hold the embedded MQTT broker of the edge: listeners,
// SAS/X.509 authentication, ACL and the Azure IoT Hub topic mapping (issue 3).
package broker
