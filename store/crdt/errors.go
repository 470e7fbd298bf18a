package crdt

import "errors"

// Sentinel errors; callers match them with errors.Is.
var (
	// ErrClockSkew: a peer timestamp is beyond the hard forward-skew limit.
	ErrClockSkew = errors.New("crdt: peer clock too far ahead")
	// ErrForbiddenOrigin: the field's origin may not write its section.
	ErrForbiddenOrigin = errors.New("crdt: origin may not write section")
	// ErrRestoredReplica: a peer has seen dots of ours that we do not remember.
	ErrRestoredReplica = errors.New("crdt: replica restored without a new incarnation")
	// ErrUnsupportedValue: a patch value has no JSON representation here.
	ErrUnsupportedValue = errors.New("crdt: unsupported value")
	// ErrBadKey: a key is empty or contains '.'.
	ErrBadKey = errors.New("crdt: invalid key")
	// ErrBadSection: the section is unknown or not valid for the operation.
	ErrBadSection = errors.New("crdt: invalid section")
	// ErrBadField: a field is malformed (unknown kind, invalid path).
	ErrBadField = errors.New("crdt: malformed field")
)
