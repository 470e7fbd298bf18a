package crdt

// Ack is what one member replica of a twin has acknowledged: the version
// vector it last sent to this replica (with every sync exchange).
type Ack struct {
	Replica ReplicaID `cbor:"1,keyasint,omitempty"`
	VV      VV        `cbor:"2,keyasint,omitempty"`
}

// Usable reports whether local (this replica's version vector) holds
// everything a.Replica had minted when it sent a: only then may the ack
// decide stability, since a field of that replica with a smaller key could
// otherwise still be on its way (§3.5, second clause).
func (a Ack) Usable(local VV) bool { return local[a.Replica] >= a.VV[a.Replica] }

// Stable is the causal stability rule of §3.5 for the members of a twin
// other than this replica: a dot is stable when this replica covers it and
// every member's usable ack covers it. acks must hold one usable ack per
// member (a member with no usable ack yet makes nothing stable: pass a
// zero Ack for it). The member set is general: the hub and the edge whose
// scope holds the twin today; raft peers and nested edges tomorrow.
func Stable(local VV, acks []Ack) func(Dot) bool {
	return func(d Dot) bool {
		if !local.Covers(d) {
			return false
		}
		for _, a := range acks {
			if !a.Usable(local) || !a.VV.Covers(d) {
				return false
			}
		}
		return true
	}
}
