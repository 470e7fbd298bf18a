// Package upstream will hold the edge side of the link to the hub: drain,
// delta exchange, resume and backoff (issue 4).
package upstream
