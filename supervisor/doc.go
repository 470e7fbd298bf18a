// Package supervisor will run module processes from a deployment manifest
// with restart policies and status reporting (issue 5).
package supervisor
