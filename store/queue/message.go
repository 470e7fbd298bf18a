package queue

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/outpost-edge/outpost/store/kv"
)

// Message is one queued message. ID, Source, Props, Sys, Body and TTL are
// the sender's; Seq and EnqueuedAt are set by the queue.
type Message struct {
	// ID is the sender's message id; Append generates one (unique across
	// restarts) when it is empty, so the far end can de-duplicate.
	ID     string
	Source string // e.g. "devices/d/modules/m"
	Props  map[string]string
	Sys    map[string]string
	Body   []byte
	// TTL bounds how long the message waits; 0 takes the queue's DefaultTTL,
	// and a zero DefaultTTL means it never expires.
	TTL time.Duration
	// EdgePath names the edges that carried the message into this one,
	// the first the one it entered through (nested edges: a parent edge
	// queues its children's messages); nil for a message of this edge.
	EdgePath []string

	Seq        uint64    // position in the queue, from 1, strictly increasing
	EnqueuedAt time.Time // wall clock at Append
}

// record is Message on disk. Times are integers (nanoseconds) because the
// CBOR time encoding rounds to seconds; Seq lives in the key.
type record struct {
	ID      string            `cbor:"1,keyasint,omitempty"`
	Source  string            `cbor:"2,keyasint,omitempty"`
	Props   map[string]string `cbor:"3,keyasint,omitempty"`
	Sys     map[string]string `cbor:"4,keyasint,omitempty"`
	Body    []byte            `cbor:"5,keyasint,omitempty"`
	TTL     int64             `cbor:"6,keyasint,omitempty"` // nanoseconds, 0 = never
	Wall    int64             `cbor:"7,keyasint,omitempty"` // enqueue wall clock, Unix nanoseconds
	Elapsed int64             `cbor:"8,keyasint,omitempty"` // enqueue time on the store's elapsed clock
	Path    []string          `cbor:"9,keyasint,omitempty"` // Message.EdgePath
}

func (r *record) message(seq uint64) Message {
	m := Message{ID: r.ID, Source: r.Source, Props: r.Props, Sys: r.Sys, Body: r.Body, EdgePath: r.Path,
		TTL: time.Duration(r.TTL), Seq: seq}
	if r.Wall != 0 {
		m.EnqueuedAt = time.Unix(0, r.Wall)
	}
	return m
}

// DecodeRecord decodes a stored message record (the value under a queue
// message key). Seq is not part of the record and is left 0.
func DecodeRecord(b []byte) (Message, error) {
	var r record
	if err := kv.Unmarshal(b, &r); err != nil {
		return Message{}, err
	}
	return r.message(0), nil
}

func decodeRecord(b []byte) (record, error) {
	var r record
	err := kv.Unmarshal(b, &r)
	return r, err
}

// validate rejects what the decoder would later refuse: a stored record
// that cannot be read back would be lost.
func (m *Message) validate() error {
	if !utf8.ValidString(m.ID) || !utf8.ValidString(m.Source) {
		return fmt.Errorf("%w: id and source must be UTF-8", ErrInvalid)
	}
	if len(m.ID) > maxIDLen {
		return fmt.Errorf("%w: id longer than %d bytes", ErrInvalid, maxIDLen)
	}
	if m.TTL < 0 {
		return fmt.Errorf("%w: negative ttl %v", ErrInvalid, m.TTL)
	}
	for _, p := range []map[string]string{m.Props, m.Sys} {
		if len(p) > maxProps {
			return fmt.Errorf("%w: more than %d properties", ErrInvalid, maxProps)
		}
		for k, v := range p {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return fmt.Errorf("%w: property %q is not UTF-8", ErrInvalid, k)
			}
		}
	}
	return nil
}

func utf8Valid(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

const (
	maxIDLen = 1024
	maxProps = 1 << 12
)

// The generated id is a per-process random prefix plus a counter: unique
// across restarts (the prefix is 64 random bits) without touching the disk.
var (
	idPrefix  = newIDPrefix()
	idCounter atomic.Uint64
)

func newIDPrefix() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return base32.HexEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]) + "-"
}

// NewID returns a message id that is unique across processes and restarts.
// Append uses it for messages without an ID; callers that need to know the
// id before Append returns may set it themselves.
func NewID() string {
	return idPrefix + strconv.FormatUint(idCounter.Add(1), 36)
}
