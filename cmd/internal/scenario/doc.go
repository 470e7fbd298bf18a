// Package scenario holds the commands that testscript scenarios
// (testdata/script/*.txtar, testdata/interop/*.txtar) use besides
// `exec outpost`: wait for an edge or a hub to be ready, cut and restore the
// link, publish and subscribe over MQTT, patch and compare twins, check the
// queues and the hub's event log. `go test ./cmd/outpost` and
// `outpost scenario run` (Run) both take them from Commands, so a scenario
// behaves the same in either.
//
// Some commands start goroutines that outlive the command: `mqtt flood`
// (publishers), `mqtt methods` (a paho client) and `link start` (the proxy).
// Each registers their shutdown with ts.Defer, so they end with the script
// that started them.
package scenario
