// Command outpost-filter is a module for an outpost edge that forwards
// only readings above a temperature threshold (see cmd/internal/samples).
package main

import "github.com/outpost-edge/outpost/cmd/internal/samples"

func main() { samples.FilterMain() }
