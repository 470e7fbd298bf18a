// Package hub will hold the cloud side: registry, twins, event log and the
// REST API, applied through one state machine (issue 4).
package hub
