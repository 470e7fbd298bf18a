package downstream

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// memberPrefix names a child edge as a member of its subtree's twins.
const memberPrefix = "child:"

// ChildMembers are the children whose subtree holds twin id, as twin
// members ("child:<edge>"): a tombstone there waits for their acks.
func (s *Server) ChildMembers(id string) []string {
	dev, _, _ := strings.Cut(id, "/")
	for range MaxDepth + 1 {
		d, ok, _ := s.opts.Identities.Get(dev)
		if !ok {
			return nil
		}
		parent := s.parentOf(d)
		if parent == s.opts.Edge {
			if d.Edge && dev != s.opts.Edge {
				return []string{memberPrefix + dev}
			}
			return nil // a device or module of this edge itself
		}
		if parent == "" {
			return nil
		}
		dev = parent
	}
	return nil
}

// ackChild records a child's version vector as its ack (the twin
// tombstones it holds) and collects what became stable.
func (s *Server) ackChild(ctx context.Context, child string, p protocol.Pull) error {
	if s.opts.Twins == nil || p.TwinVV == nil {
		return nil
	}
	if err := s.opts.Twins.Ack(ctx, memberPrefix+child, crdt.ReplicaID(p.Instance), p.TwinVV); err != nil {
		return err
	}
	members := s.opts.Members
	if members == nil {
		members = s.ChildMembers
	}
	if _, err := s.opts.Twins.GC(ctx, members, 32); err != nil {
		return fmt.Errorf("twin gc: %w", err)
	}
	return nil
}

// writerOf returns the edge whose incarnation a replica id names, if it
// is an edge known here.
func (s *Server) writerOf(o crdt.ReplicaID) (string, bool) {
	base, _, ok := twin.SplitReplica(o)
	name, isEdge := strings.CutPrefix(base, "edge:")
	if !ok || !isEdge || !twin.IsEdgeReplica(o, name) {
		return "", false
	}
	id, known, _ := s.opts.Identities.Get(name)
	return name, known && id.Edge
}

// Forwards reports whether o is an incarnation of an edge below this one:
// its writes reach the hub through this edge (the link sends them up).
func (s *Server) Forwards(o crdt.ReplicaID) bool {
	name, ok := s.writerOf(o)
	return ok && name != s.opts.Edge && s.inSubtree(s.opts.Edge, name)
}

// twinsFrame merges a child's twin changes: fields written by incarnations
// of edges in its subtree, each for a twin in that edge's own subtree, with
// their stamps as they are; answers this edge's version vector.
func (s *Server) twinsFrame(ctx context.Context, child string, m protocol.TwinsUp) (protocol.TwinsAck, error) {
	if err := checkInstance(child, m.Instance); err != nil {
		return protocol.TwinsAck{}, err
	}
	writerOK := func(o crdt.ReplicaID) (string, bool) {
		w, ok := s.writerOf(o)
		return w, ok && s.inSubtree(child, w)
	}
	batch := twin.Batch{Commits: m.Batch.Commits}
	for _, c := range m.Batch.Commits {
		if _, ok := writerOK(c.Origin); !ok {
			return protocol.TwinsAck{}, invalid("commit for %s; a child edge sends only writes of edges in its subtree", c.Origin)
		}
	}
	for _, td := range m.Batch.Twins {
		for _, f := range td.Fields {
			if f.Dot().Origin != f.Key().Origin {
				// The dot decides whose write it counts as (the version
				// vector, the ownership of sections): it must be the stamper's.
				return protocol.TwinsAck{}, invalid("twin %q carries a field stamped by %s under a dot of %s", td.ID, f.Key().Origin, f.Dot().Origin)
			}
			w, ok := writerOK(f.Key().Origin)
			if !ok || !s.inSubtree(w, td.ID) {
				return protocol.TwinsAck{}, invalid("twin %q carries a field written by %s, which is not an edge above it in the subtree of %q", td.ID, f.Key().Origin, child)
			}
		}
		cur, ok, _ := s.opts.Identities.Get(td.ID)
		if !ok || m.Generations[td.ID] != "" && m.Generations[td.ID] != cur.Generation {
			s.warn("stale twin", "twin delta of a child edge refused: written for a deleted generation of the identity", "child", child, "twin", td.ID)
			continue
		}
		td.CloudDesired = 0 // the hub's desired version comes from the hub, never from below
		batch.Twins = append(batch.Twins, td)
	}
	changes, err := s.opts.Twins.ApplyDelta(ctx, batch)
	if errors.Is(err, twin.ErrBadDelta) {
		return protocol.TwinsAck{}, invalid("%v", err)
	} else if err != nil {
		return protocol.TwinsAck{}, err
	}
	if s.opts.TwinChanges != nil && len(changes) > 0 {
		s.opts.TwinChanges(changes)
	}
	s.seen(child, m.Instance, nil)
	return protocol.TwinsAck{TwinVV: s.opts.Twins.VV(), Hub: s.opts.Replica}, nil
}

// ChildOf returns the child edge whose subtree holds id ("d" or "d/m"),
// "" when id is this edge's own (or unknown).
func (s *Server) ChildOf(id string) string {
	m := s.ChildMembers(id)
	if len(m) == 0 {
		return ""
	}
	return strings.TrimPrefix(m[0], memberPrefix)
}
