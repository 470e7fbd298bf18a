// Package samples holds sample modules written with broker/client, the
// module SDK: a simulated temperature sensor (outpost-tempsensor, like
// Azure's SimulatedTemperatureSensor) and a filter that forwards only hot
// readings (outpost-filter). Their mains (TempSensorMain, FilterMain) read
// the environment the edge's supervisor sets; RunTempSensor and RunFilter
// take a client so tests can drive them against a real broker.
//
// Each Run function runs on its caller's goroutine; the client's own
// goroutines call its handlers (see broker/client).
package samples
