package crdt

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

func drawWorld(t *rapid.T, o worldOpts) *world {
	if o.replicas == 0 {
		o.replicas = rapid.IntRange(2, 4).Draw(t, "replicas")
	}
	if o.steps == 0 {
		o.steps = rapid.IntRange(5, 60).Draw(t, "steps")
	}
	return newWorld(t, o)
}

// genDoc draws a random state directly from fields, including malformed
// ties (same key, different content), to stress the lattice.
func genDoc(t *rapid.T) *Doc {
	d := &Doc{}
	origins := []ReplicaID{"hub", "gw1", "gw2"}
	for range rapid.IntRange(0, 25).Draw(t, "fields") {
		f := Field{Section: rapid.SampledFrom([]Section{Tags, Desired, Reported, Overlay}).Draw(t, "sec")}
		if rapid.IntRange(0, 5).Draw(t, "root") > 0 {
			f.Path = genPath(t, 4)
		}
		o := rapid.SampledFrom(origins).Draw(t, "origin")
		k := Key{TS: HLC{Wall: rapid.Int64Range(1, 4).Draw(t, "wall"), Logical: rapid.Uint32Range(0, 1).Draw(t, "lc")}, Origin: o}
		dot := Dot{Origin: o, Seq: rapid.Uint64Range(1, 6).Draw(t, "seq")}
		if f.IsClear = rapid.Bool().Draw(t, "isClear"); f.IsClear {
			f.C = Clear{K: k, D: dot}
		} else {
			f.W = Write{K: k, D: dot, Kind: rapid.SampledFrom([]Kind{Val, Obj, Del}).Draw(t, "kind")}
			if f.W.Kind == Val {
				f.W.Value, _ = encodeValue(genScalar(t))
			}
		}
		d.Merge(f)
	}
	return d
}

func join(a, b *Doc) *Doc {
	m := a.Clone()
	for _, f := range b.Fields() {
		m.Merge(f)
	}
	return m
}

func TestProp01LatticeLaws(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b, c := genDoc(t), genDoc(t), genDoc(t)
		if !join(a, b).Equal(join(b, a)) {
			t.Fatal("merge not commutative")
		}
		if !join(join(a, b), c).Equal(join(a, join(b, c))) {
			t.Fatal("merge not associative")
		}
		if !join(a, a).Equal(a) {
			t.Fatal("merge not idempotent")
		}
		ab := join(a, b)
		for _, f := range a.Fields() {
			if ab.Clone().Merge(f) {
				t.Fatalf("a not below merge(a,b): %+v", f)
			}
		}
		// The state encoding (its field list) round-trips, here through JSON.
		raw, err := json.Marshal(ab.Fields())
		if err != nil {
			t.Fatal(err)
		}
		var fs []Field
		if err := json.Unmarshal(raw, &fs); err != nil {
			t.Fatal(err)
		}
		back := &Doc{}
		for _, f := range fs {
			back.Merge(f)
		}
		if !back.Equal(ab) || render(back) != render(ab) {
			t.Fatal("encoding does not round-trip")
		}
	})
}

func TestProp02Convergence(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := drawWorld(t, worldOpts{overlay: true, silent: -1})
		w.run()
		w.checkConverged(true)
	})
}

func TestProp03SequentialSpec(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := drawWorld(t, worldOpts{overlay: true, gc: rapid.Bool().Draw(t, "gc"), silent: -1})
		w.run()
		w.checkSpec()
		w.checkConverged(!w.opts.gc)
	})
}

func TestProp04NoResurrection(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		// checkNoResurrection runs after every step, through GC and replays.
		w := drawWorld(t, worldOpts{gc: true, silent: -1})
		w.run()
		w.checkNoResurrection()
		w.checkSpec()
	})
}

// leafWrites lists the non-null leaves and empty objects a patch writes.
func leafWrites(prefix Path, patch map[string]any, yield func(Path, any)) {
	for _, k := range slices.Sorted(maps.Keys(patch)) {
		p := append(slices.Clone(prefix), k)
		switch v := patch[k].(type) {
		case nil:
		case map[string]any:
			if len(v) == 0 {
				yield(p, v)
			}
			leafWrites(p, v, yield)
		default:
			yield(p, v)
		}
	}
}

func TestProp05NoLostUpdate(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := drawWorld(t, worldOpts{gc: rapid.Bool().Draw(t, "gc"), silent: -1})
		w.run()
		for _, sec := range []Section{Tags, Desired, Reported} {
			ops := w.accepted(sec)
			for i, op := range ops {
				leafWrites(nil, op.patch, func(p Path, v any) {
					for _, later := range ops[i+1:] {
						if touches(later, p) {
							return
						}
					}
					for _, r := range w.reps {
						got, ok := getAt(r.doc.Visible(sec), p)
						if m, isMap := v.(map[string]any); isMap && len(m) == 0 {
							_, ok = got.(map[string]any)
						} else {
							ok = ok && canon(got) == canon(v)
						}
						if !ok {
							t.Fatalf("prop 5: %s lost %s %q = %s from %v", r.id, sec, p, canon(v), op.key)
						}
					}
				})
			}
		}
	})
}

func TestProp06CausalityBeatsSkew(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		// The world asserts key(b) > key(a) whenever b is minted after a
		// was merged (see mint). Here, also the direct duel: whatever the
		// clocks, a write made after seeing another one wins.
		w := drawWorld(t, worldOpts{replicas: 3, overlay: true, silent: -1})
		w.run()
		a, b := w.reps[1], w.reps[2]
		a.phys.ms = baseMs + rapid.Int64Range(0, 6*3_600_000).Draw(t, "aAhead")
		b.phys.ms = rapid.SampledFrom([]int64{1000, baseMs - 6*3_600_000, baseMs}).Draw(t, "bBehind")
		p := genPath(t, 3)
		ka, da := w.mint(a, Reported)
		w.applyLocal(a, simOp{key: ka, dot: da, sec: Reported, patch: nest(p, json.Number("1"))})
		w.send(1, 2, 3)
		m := w.net[len(w.net)-1]
		w.receive(m, m.chunks)
		kb, db := w.mint(b, Reported)
		w.applyLocal(b, simOp{key: kb, dot: db, sec: Reported, patch: nest(p, json.Number("2"))})
		w.antiEntropy()
		for _, r := range w.reps {
			if got, _ := getAt(r.doc.Visible(Reported), p); canon(got) != "2" {
				t.Fatalf("%s: later write lost to skew: %s", r.id, canon(got))
			}
		}
		w.checkSpec()
	})
}

// nest builds {p0: {p1: ... v}}.
func nest(p Path, v any) map[string]any {
	m := map[string]any{p[len(p)-1]: v}
	for i := len(p) - 2; i >= 0; i-- {
		m = map[string]any{p[i]: m}
	}
	return m
}

func TestProp07DeltaCorrectness(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := drawWorld(t, worldOpts{overlay: true, silent: -1})
		for range w.opts.steps {
			w.step()
		}
		si := rapid.IntRange(0, len(w.reps)-1).Draw(t, "S")
		pi := rapid.IntRange(0, len(w.reps)-1).Draw(t, "P")
		S, P := w.reps[si], w.reps[pi]
		delta := S.doc.Delta(P.vv)
		if len(delta) > len(S.doc.Fields()) {
			t.Fatal("delta larger than the full state")
		}
		for i, f := range delta {
			if P.vv.Covers(f.Dot()) {
				t.Fatalf("delta holds covered dot %v", f.Dot())
			}
			if i > 0 && compareField(delta[i-1], f) > 0 {
				t.Fatal("delta not sorted by (origin, seq)")
			}
		}
		// Complete transfer: P ⊔ delta ⊒ S.
		full := transfer(P.doc.Clone(), P.vv.Clone(), Chunks(delta, S.vv, P.vv, 3), -1)
		for _, f := range S.doc.Fields() {
			if full.doc.Clone().Merge(f) {
				t.Fatalf("merge(P, delta) misses %s %q", f.Section, f.Path)
			}
		}
		// Truncate anywhere, resume from the last commit: same result.
		size := rapid.IntRange(1, 4).Draw(t, "size")
		chunks := Chunks(delta, S.vv, P.vv, size)
		cut := rapid.IntRange(0, len(chunks)).Draw(t, "cut")
		part := transfer(P.doc.Clone(), P.vv.Clone(), chunks, cut)
		resumed := transfer(part.doc, part.vv, Chunks(S.doc.Delta(part.vv), S.vv, part.vv, size), -1)
		if !resumed.doc.Equal(full.doc) || canon(resumed.vv) != canon(full.vv) {
			t.Fatal("truncated and resumed transfer differs from a complete one")
		}
	})
}

type peerState struct {
	doc *Doc
	vv  VV
}

// transfer delivers chunks[:cut] (all if cut < 0) with the receiver rules.
func transfer(d *Doc, vv VV, chunks []Chunk, cut int) peerState {
	if cut >= 0 {
		chunks = chunks[:cut]
	}
	for _, ch := range chunks {
		for _, f := range ch.Fields {
			if !vv.Covers(f.Dot()) {
				d.Merge(f)
			}
		}
		for _, c := range ch.Commits {
			vv.Advance(c)
		}
	}
	return peerState{d, vv}
}

func TestProp08GCSafetyAndLiveness(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		// Safety: world.step compares every replica with its GC-free shadow
		// after every step, and collect checks that GC changes nothing visible.
		w := drawWorld(t, worldOpts{gc: true, silent: -1})
		w.run()
		w.checkSpec()
		// Liveness: everybody acked everything, so collection empties tombstones.
		for _, r := range w.reps {
			before := render(r.doc)
			r.doc.StableGC(w.stable(r))
			if r.doc.Tombstones() != 0 || render(r.doc) != before {
				t.Fatalf("%s: %d tombstones left after all acks", r.id, r.doc.Tombstones())
			}
		}
		w.checkConverged(true)
	})
}

func TestProp08GCSilentMember(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := drawWorld(t, worldOpts{gc: true, replicas: rapid.IntRange(3, 4).Draw(t, "replicas")})
		w.opts.silent = rapid.IntRange(0, len(w.reps)-1).Draw(t, "silent")
		for range w.opts.steps {
			w.step()
		}
		if len(w.gcDrops) != 0 {
			t.Fatalf("stable GC dropped %d tombstones with a silent member", len(w.gcDrops))
		}
		w.antiEntropy()
		w.checkSpec()
	})
}

func TestProp09DotHygiene(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var disk uint64 // the persisted Next
		var backup uint64
		failing := false
		persist := func(upTo uint64) error {
			if failing {
				return errors.New("fsync failed")
			}
			disk = upTo
			return nil
		}
		opts := SeqOptions{Persist: persist, Reserve: rapid.Uint64Range(1, 5).Draw(t, "reserve")}
		s := NewSeq(opts)
		seen := map[uint64]bool{}
		peerSaw := uint64(0) // highest dot a peer received from us
		for range rapid.IntRange(1, 80).Draw(t, "steps") {
			switch rapid.IntRange(0, 6).Draw(t, "action") {
			case 0: // crash between the WAL and apply: restart from disk
				opts.Next = disk
				s = NewSeq(opts)
			case 1:
				failing = rapid.Bool().Draw(t, "failing")
			case 2:
				backup = disk
			default:
				n, err := s.Next()
				if err != nil {
					continue
				}
				if seen[n] {
					t.Fatalf("seq %d issued twice", n)
				}
				seen[n] = true
				if rapid.Bool().Draw(t, "sent") {
					peerSaw = max(peerSaw, n)
				}
			}
		}
		if err := CheckIncarnation("gw1", s.Bound(), VV{"gw1": peerSaw}); err != nil {
			t.Fatalf("false alarm: %v", err)
		}
		opts.Next = backup
		checkRestore(t, NewSeq(opts), peerSaw)
	})
}

// checkRestore: a replica restored from a backup without a new incarnation
// is detected whenever a peer holds a dot it could reissue.
func checkRestore(t *rapid.T, restored *Seq, peerSaw uint64) {
	err := CheckIncarnation("gw1", restored.Bound(), VV{"gw1": peerSaw})
	if detected := errors.Is(err, ErrRestoredReplica); detected != (peerSaw > restored.Bound()) {
		t.Fatalf("restore detection %v with peer at %d and bound %d", err, peerSaw, restored.Bound())
	}
	if err == nil {
		if n, err := restored.Next(); err == nil && n <= peerSaw {
			t.Fatalf("restored replica reissues seq %d the peer has", n)
		}
	}
}

func TestProp10Ownership(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := drawWorld(t, worldOpts{forge: true, overlay: true, gc: rapid.Bool().Draw(t, "gc"), silent: -1})
		w.run()
		for _, r := range w.reps {
			for _, f := range r.doc.Fields() {
				if !w.policy(f.Section, f.Dot().Origin) {
					t.Fatalf("%s holds forbidden %s field from %s", r.id, f.Section, f.Dot().Origin)
				}
			}
		}
		for _, forger := range w.reps {
			for _, f := range forger.forged {
				for _, r := range w.reps {
					if !r.vv.Covers(f.Dot()) {
						t.Fatalf("%s never committed rejected dot %v", r.id, f.Dot())
					}
					changed, err := r.doc.MergeChecked(f, w.policy)
					if changed || !errors.Is(err, ErrForbiddenOrigin) {
						t.Fatalf("%s: forged field accepted: %v", r.id, err)
					}
				}
			}
		}
		w.checkSpec()
		w.checkConverged(!w.opts.gc)
	})
}

func TestProp11OverlayDeterminism(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := drawWorld(t, worldOpts{overlay: true, gc: rapid.Bool().Draw(t, "gc"), silent: -1})
		w.run()
		want := canon(w.expectedEffective())
		for _, r := range w.reps {
			if got := canon(r.doc.Effective()); got != want {
				t.Fatalf("%s effective desired\ngot  %s\nwant %s", r.id, got, want)
			}
		}
	})
}

// expectedEffective: the replayed desired plus, for each path, the last
// override by key if it is set and no desired op touching its path has a
// key above its basis.
func (w *world) expectedEffective() map[string]any {
	desired := w.accepted(Desired)
	eff := oracleDoc(desired)
	last := map[string]simOp{}
	for _, op := range w.accepted(Overlay) {
		last[op.path.String()] = op
	}
	var live []simOp
	for _, op := range last {
		superseded := false
		for _, d := range desired {
			superseded = superseded || (touches(d, op.path) && op.basis.Less(d.key))
		}
		if op.value != nil && !superseded {
			live = append(live, op)
		}
	}
	slices.SortFunc(live, func(a, b simOp) int { return pathLess(a.path, b.path) })
	for _, op := range live {
		putAt(eff, op.path, op.value)
	}
	return eff
}
