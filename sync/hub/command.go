package hub

import (
	"errors"
	"fmt"

	"github.com/outpost-edge/outpost/store/kv"
)

// A command travels as an envelope of deterministic CBOR (store/kv's
// codec): {v: version, t: type, a: time, b: body}, the body being the
// command's own CBOR. A raft log entry will carry these bytes unchanged.
// The type numbers and field keys are a storage format: never reuse or
// renumber them; a change of a body's meaning gets a new version.
type envelope struct {
	V  uint64 `cbor:"v"`
	T  uint64 `cbor:"t"`
	At int64  `cbor:"a"` // unix ms, decided by the proposer: the command's clock
	B  []byte `cbor:"b"`
}

// Command types, one per command (see commandSpecs).
const (
	cmdPutIdentities uint64 = iota + 1
	cmdDeleteIdentities
	cmdWriteTwin
	cmdApplyConfiguration
	cmdSendC2D
	cmdAppendEvents
	cmdMergeTwins
	cmdExpireEvents
	cmdAckPull
	cmdGCTwins
	cmdExpireC2D
	cmdSetNode
	cmdRemoveNode
	cmdSetOwner
	cmdPutImage
	cmdDeleteImage
	cmdSetPresence
	cmdPutConfiguration
	cmdDeleteConfiguration
	cmdPutJob
	cmdJobProgress
	cmdCancelJob
	cmdExpireJobs
	cmdSetRouteCursors
)

// ErrCommand: an entry this hub cannot apply (malformed, an unknown type,
// or a newer version written by a newer hub: upgrade this node).
var ErrCommand = errors.New("bad state machine command")

// commandSpec is what the codec knows of one command type.
type commandSpec struct {
	name    string
	version uint64 // the newest version this hub reads and writes
	decode  func(b []byte) (any, error)
}

func decodeAs[T any](b []byte) (any, error) {
	var c T
	if err := kv.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	return c, nil
}

var commandSpecs = map[uint64]commandSpec{
	cmdPutIdentities:       {"putIdentities", 1, decodeAs[putIdentities]},
	cmdDeleteIdentities:    {"deleteIdentities", 1, decodeAs[deleteIdentities]},
	cmdWriteTwin:           {"writeTwin", 2, decodeAs[writeTwin]},                   // 2: IfMatch
	cmdApplyConfiguration:  {"applyConfiguration", 2, decodeAs[applyConfiguration]}, // 2: AtScale, Configs
	cmdSendC2D:             {"sendC2D", 1, decodeAs[sendC2D]},
	cmdAppendEvents:        {"appendEvents", 3, decodeAs[appendEvents]},
	cmdMergeTwins:          {"mergeTwins", 1, decodeAs[mergeTwins]},
	cmdExpireEvents:        {"expireEvents", 1, decodeAs[expireEvents]},
	cmdAckPull:             {"ackPull", 1, decodeAs[ackPull]},
	cmdGCTwins:             {"gcTwins", 1, decodeAs[gcTwins]},
	cmdExpireC2D:           {"expireC2D", 1, decodeAs[expireC2D]},
	cmdSetNode:             {"setNode", 1, decodeAs[setNode]},
	cmdRemoveNode:          {"removeNode", 1, decodeAs[removeNode]},
	cmdSetOwner:            {"setOwner", 1, decodeAs[setOwner]},
	cmdPutImage:            {"putImage", 1, decodeAs[putImage]},
	cmdDeleteImage:         {"deleteImage", 1, decodeAs[deleteImage]},
	cmdSetPresence:         {"setPresence", 1, decodeAs[setPresence]},
	cmdPutConfiguration:    {"putConfiguration", 1, decodeAs[putConfiguration]},
	cmdDeleteConfiguration: {"deleteConfiguration", 1, decodeAs[deleteConfiguration]},
	cmdPutJob:              {"putJob", 1, decodeAs[putJob]},
	cmdJobProgress:         {"jobProgress", 1, decodeAs[jobProgress]},
	cmdCancelJob:           {"cancelJob", 1, decodeAs[cancelJob]},
	cmdExpireJobs:          {"expireJobs", 1, decodeAs[expireJobs]},
	cmdSetRouteCursors:     {"setRouteCursors", 1, decodeAs[setRouteCursors]},
}

func commandType(cmd any) (uint64, error) {
	switch cmd.(type) {
	case putIdentities:
		return cmdPutIdentities, nil
	case deleteIdentities:
		return cmdDeleteIdentities, nil
	case writeTwin:
		return cmdWriteTwin, nil
	case applyConfiguration:
		return cmdApplyConfiguration, nil
	case sendC2D:
		return cmdSendC2D, nil
	case appendEvents:
		return cmdAppendEvents, nil
	case mergeTwins:
		return cmdMergeTwins, nil
	case expireEvents:
		return cmdExpireEvents, nil
	case ackPull:
		return cmdAckPull, nil
	case gcTwins:
		return cmdGCTwins, nil
	case expireC2D:
		return cmdExpireC2D, nil
	case setNode:
		return cmdSetNode, nil
	case removeNode:
		return cmdRemoveNode, nil
	case setOwner:
		return cmdSetOwner, nil
	case putImage:
		return cmdPutImage, nil
	case deleteImage:
		return cmdDeleteImage, nil
	case setPresence:
		return cmdSetPresence, nil
	case putConfiguration:
		return cmdPutConfiguration, nil
	case deleteConfiguration:
		return cmdDeleteConfiguration, nil
	case putJob:
		return cmdPutJob, nil
	case jobProgress:
		return cmdJobProgress, nil
	case cancelJob:
		return cmdCancelJob, nil
	case expireJobs:
		return cmdExpireJobs, nil
	case setRouteCursors:
		return cmdSetRouteCursors, nil
	}
	return 0, fmt.Errorf("%w: %T is not a command of the hub's state machine", ErrCommand, cmd)
}

// encodeCommand makes the entry Apply takes: cmd at the time at (unix
// ms), which the proposer chose.
func encodeCommand(cmd any, at int64) ([]byte, error) {
	t, err := commandType(cmd)
	if err != nil {
		return nil, err
	}
	body, err := kv.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode command %s: %w", commandSpecs[t].name, err)
	}
	return kv.Marshal(envelope{V: commandSpecs[t].version, T: t, At: at, B: body})
}

// decodeCommand reads an entry: the command and its time. It never
// panics; anything it cannot read is an ErrCommand saying why.
func decodeCommand(entry []byte) (cmd any, at int64, err error) {
	var e envelope
	if err := kv.Unmarshal(entry, &e); err != nil {
		return nil, 0, fmt.Errorf("%w: envelope: %w", ErrCommand, err)
	}
	spec, ok := commandSpecs[e.T]
	switch {
	case !ok:
		return nil, 0, fmt.Errorf("%w: unknown command type %d (written by a newer hub? upgrade this node)", ErrCommand, e.T)
	case e.V == 0 || e.V > spec.version:
		return nil, 0, fmt.Errorf("%w: %s version %d, this hub reads up to version %d (upgrade this node)", ErrCommand, spec.name, e.V, spec.version)
	}
	if cmd, err = spec.decode(e.B); err != nil {
		return nil, 0, fmt.Errorf("%w: %s: %w", ErrCommand, spec.name, err)
	}
	if a, ok := cmd.(appendEvents); ok { // its versions apply differently
		a.Version = e.V
		cmd = a
	}
	return cmd, e.At, nil
}
