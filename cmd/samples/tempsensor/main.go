// Command outpost-tempsensor is a simulated temperature sensor module for
// an outpost edge (see cmd/internal/samples).
package main

import "github.com/outpost-edge/outpost/cmd/internal/samples"

func main() { samples.TempSensorMain() }
