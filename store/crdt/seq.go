package crdt

import "fmt"

const defaultSeqReserve = 1024

// SeqOptions configure a Seq.
type SeqOptions struct {
	// Next is the persisted value loaded at boot: no number below it was
	// at or above it was handed out by an earlier run.
	Next uint64
	// Persist durably records that numbers below upTo may be in use; on the
	// next boot Next must be upTo. It is called before any of them is used.
	Persist func(upTo uint64) error
	// Reserve is the block size persisted at once (default 1024).
	Reserve uint64
}

// Seq allocates dot sequence numbers that are never reused across crashes:
// blocks are reserved (persisted) before their first number is returned.
// Numbers skipped by a crash leave gaps; commits make gaps harmless.
type Seq struct {
	next, limit uint64
	reserve     uint64
	persist     func(uint64) error
}

// NewSeq returns an allocator continuing from opts.Next (at least 1).
func NewSeq(opts SeqOptions) *Seq {
	next := max(opts.Next, 1)
	r := opts.Reserve
	if r == 0 {
		r = defaultSeqReserve
	}
	return &Seq{next: next, limit: next, reserve: r, persist: opts.Persist}
}

// Next returns a fresh sequence number.
func (s *Seq) Next() (uint64, error) {
	if s.next >= s.limit {
		lim := s.next + s.reserve
		if s.persist != nil {
			if err := s.persist(lim); err != nil {
				return 0, fmt.Errorf("reserve dot sequence up to %d: %w", lim, err)
			}
		}
		s.limit = lim
	}
	n := s.next
	s.next++
	return n, nil
}

// Bound returns the highest number that this or an earlier run may have
// handed out; pass it to CheckIncarnation.
func (s *Seq) Bound() uint64 { return s.limit - 1 }

// CheckIncarnation returns ErrRestoredReplica when a peer's VV covers more of
// self's dots than self may have issued (selfSeq, see Seq.Bound): self was
// restored from a backup and must continue under a new incarnation, or its
// next dots would collide with ones peers already hold.
func CheckIncarnation(self ReplicaID, selfSeq uint64, peerVV VV) error {
	if seen := peerVV[self]; seen > selfSeq {
		return fmt.Errorf("check incarnation of %s: peer saw seq %d, we issued at most %d: %w",
			self, seen, selfSeq, ErrRestoredReplica)
	}
	return nil
}
