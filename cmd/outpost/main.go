// Command outpost is the offline-first edge runtime: `outpost edge` on a
// gateway, `outpost hub` in the cloud, and the CLI that drives the hub.
package main

import "os"

func main() { os.Exit(run(os.Args[1:])) }
