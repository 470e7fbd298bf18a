// Package protocol will hold the versioned CBOR frames of the edge–hub link
// (issue 4).
package protocol
