package crdt

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"pgregory.net/rapid"
)

// A randomized world: replicas with adversarial clocks, random ops, and a
// network that drops, duplicates, reorders and truncates delta chunks and
// replays stale full states.

type opKind int

const (
	opPatch opKind = iota
	opReplace
	opOverlay
)

type simOp struct {
	key    Key
	dot    Dot
	sec    Section
	kind   opKind
	patch  map[string]any
	path   Path // overlay
	value  any  // overlay; nil clears the override
	basis  Key  // overlay
	forged bool
}

type snapshot struct {
	fields []Field
	vv     VV
}

type replica struct {
	id        ReplicaID
	phys      *fakePhys
	clk       *Clock
	seq       uint64
	doc       *Doc
	shadow    *Doc // same merges, never collected
	vv        VV
	acks      map[ReplicaID]VV
	session   HLC
	maxSeen   [numSections]Key
	clears    []Field // every clear this replica merged (no-resurrection check)
	snapshots []snapshot
	forged    []Field
}

type message struct {
	to     int
	from   ReplicaID
	chunks []Chunk
	ack    VV
}

type worldOpts struct {
	replicas int
	gc       bool
	overlay  bool
	forge    bool
	silent   int // index of a replica whose messages are never delivered; -1 none
	steps    int
}

type world struct {
	t        *rapid.T
	opts     worldOpts
	reps     []*replica
	ops      []simOp
	net      []*message
	policy   Policy
	rejected map[ReplicaID]int
	gcDrops  []Field // fields removed as stable, not as hidden
}

var keyNames = []string{"a", "b", "c", "d", "e", "f", "g", "h"}

func isCloud(id ReplicaID) bool { return id == "hub" }

func newWorld(t *rapid.T, o worldOpts) *world {
	w := &world{t: t, opts: o, policy: OwnershipPolicy(isCloud), rejected: map[ReplicaID]int{}}
	for i := range o.replicas {
		id := ReplicaID("hub")
		if i > 0 {
			id = ReplicaID("gw" + strconv.Itoa(i))
		}
		phys := &fakePhys{ms: baseMs + rapid.Int64Range(-600_000, 600_000).Draw(t, "skew")}
		if rapid.IntRange(0, 4).Draw(t, "boot1970") == 0 {
			phys.ms = 1000
		}
		w.reps = append(w.reps, &replica{id: id, phys: phys,
			clk: NewClock(ClockOptions{Now: phys.now, MinTrusted: minTrusted}),
			doc: &Doc{}, shadow: &Doc{}, vv: VV{}, acks: map[ReplicaID]VV{}})
	}
	return w
}

func genPath(t *rapid.T, maxDepth int) Path {
	n := rapid.IntRange(1, maxDepth).Draw(t, "depth")
	p := make(Path, n)
	for i := range p {
		p[i] = rapid.SampledFrom(keyNames[:4+i]).Draw(t, "key")
	}
	return p
}

func genScalar(t *rapid.T) any {
	switch rapid.IntRange(0, 3).Draw(t, "scalarKind") {
	case 0:
		return json.Number(strconv.Itoa(rapid.IntRange(-3, 99).Draw(t, "num")))
	case 1:
		return rapid.SampledFrom([]string{"x", "eco", "boost", ""}).Draw(t, "str")
	case 2:
		return rapid.Bool().Draw(t, "bool")
	}
	arr := []any{}
	for range rapid.IntRange(0, 2).Draw(t, "arrLen") {
		arr = append(arr, json.Number(strconv.Itoa(rapid.IntRange(0, 9).Draw(t, "elem"))))
	}
	return arr
}

// genPatch draws a patch of depth at most 4 - depth over overlapping keys.
func genPatch(t *rapid.T, depth int) map[string]any {
	m := map[string]any{}
	for range rapid.IntRange(1, 3).Draw(t, "width") {
		k := rapid.SampledFrom(keyNames[:4+depth]).Draw(t, "key")
		switch c := rapid.IntRange(0, 9).Draw(t, "elem"); {
		case c < 4:
			m[k] = genScalar(t)
		case c < 6:
			m[k] = nil
		case c < 7:
			m[k] = map[string]any{}
		case depth < 3:
			m[k] = genPatch(t, depth+1)
		default:
			m[k] = genScalar(t)
		}
	}
	return m
}

// mint stamps a new op at r for sec, checking property 6 on the way.
func (w *world) mint(r *replica, sec Section) (Key, Dot) {
	if sec == Reported && (r.session.IsZero() || r.session.Less(r.maxSeen[Reported].Session)) {
		// Fence (§3.4): a newer session was seen, so the module reconnects.
		r.session = mustNow(w.t, r.clk)
	}
	k := Key{TS: mustNow(w.t, r.clk), Origin: r.id}
	if sec == Reported {
		k.Session = r.session
	}
	if !r.maxSeen[sec].Less(k) {
		w.t.Fatalf("prop 6: %s minted %v in %s, not above merged %v", r.id, k, sec, r.maxSeen[sec])
	}
	r.maxSeen[sec] = k
	r.seq++
	r.vv[r.id] = r.seq
	return k, Dot{Origin: r.id, Seq: r.seq}
}

func (w *world) localOp(r *replica) {
	if w.opts.forge && rapid.IntRange(0, 5).Draw(w.t, "forge") == 0 {
		w.forgeOp(r)
		return
	}
	if isCloud(r.id) {
		sec := rapid.SampledFrom([]Section{Tags, Desired, Desired}).Draw(w.t, "sec")
		op := simOp{sec: sec, patch: genPatch(w.t, 0)}
		if rapid.IntRange(0, 4).Draw(w.t, "replace") == 0 {
			op.kind = opReplace
		}
		op.key, op.dot = w.mint(r, sec)
		w.applyLocal(r, op)
		return
	}
	if w.opts.overlay && rapid.IntRange(0, 2).Draw(w.t, "overlay") == 0 {
		op := simOp{sec: Overlay, kind: opOverlay, path: genPath(w.t, 3)}
		if rapid.IntRange(0, 3).Draw(w.t, "clearOverride") > 0 {
			op.value = genScalar(w.t)
		}
		op.key, op.dot = w.mint(r, Overlay)
		w.applyLocal(r, op)
		return
	}
	op := simOp{sec: Reported, patch: genPatch(w.t, 0)}
	op.key, op.dot = w.mint(r, Reported)
	w.applyLocal(r, op)
}

func (w *world) applyLocal(r *replica, op simOp) {
	var fs []Field
	var err error
	switch op.kind {
	case opPatch:
		fs, err = r.doc.Apply(op.sec, deepCopy(op.patch).(map[string]any), op.key, op.dot)
	case opReplace:
		fs, err = r.doc.Replace(op.sec, deepCopy(op.patch).(map[string]any), op.key, op.dot)
	case opOverlay:
		var f Field
		f, err = r.doc.SetOverride(op.path, op.value, op.key, op.dot)
		op.basis, fs = f.W.Basis, []Field{f}
	}
	if err != nil {
		w.t.Fatalf("local op at %s: %v", r.id, err)
	}
	for _, f := range fs {
		r.shadow.Merge(f)
		if f.IsClear {
			r.clears = append(r.clears, f)
		}
	}
	w.ops = append(w.ops, op)
}

// forgeOp: r writes a section it does not own. The op consumes a dot but
// only travels in r's deltas; every receiver must reject it.
func (w *world) forgeOp(r *replica) {
	sec := Reported
	if !isCloud(r.id) {
		sec = rapid.SampledFrom([]Section{Tags, Desired}).Draw(w.t, "forgedSec")
	}
	r.seq++
	r.vv[r.id] = r.seq
	k := Key{TS: mustNow(w.t, r.clk), Origin: r.id, Session: r.session}
	fs, err := (&Doc{}).Apply(sec, genPatch(w.t, 0), k, Dot{Origin: r.id, Seq: r.seq})
	if err != nil {
		w.t.Fatalf("forge: %v", err)
	}
	r.forged = append(r.forged, fs...)
}

func (w *world) send(from, to int, size int) {
	s, p := w.reps[from], w.reps[to]
	delta := s.doc.Delta(p.vv)
	for _, f := range s.forged {
		if !p.vv.Covers(f.Dot()) {
			delta = append(delta, f)
		}
	}
	slices.SortStableFunc(delta, compareField)
	w.net = append(w.net, &message{to: to, from: s.id,
		chunks: Chunks(delta, s.vv, p.vv, size), ack: s.vv.Clone()})
}

func (w *world) staleReplay(from, to int) {
	s := w.reps[from]
	if len(s.snapshots) == 0 {
		return
	}
	snap := rapid.SampledFrom(s.snapshots).Draw(w.t, "snapshot")
	w.net = append(w.net, &message{to: to, from: s.id,
		chunks: Chunks(snap.fields, snap.vv, VV{}, 4), ack: snap.vv.Clone()})
}

// receive delivers chunks in order; the receiver skips covered dots,
// rejects forbidden origins, observes every merged key, then commits.
func (w *world) receive(m *message, chunks []Chunk) {
	r := w.reps[m.to]
	if r.acks[m.from] == nil {
		r.acks[m.from] = VV{}
	}
	r.acks[m.from].Merge(m.ack)
	for _, ch := range chunks {
		for _, f := range ch.Fields {
			w.receiveField(r, f)
		}
		for _, c := range ch.Commits {
			r.vv.Advance(c)
		}
	}
}

func (w *world) receiveField(r *replica, f Field) {
	if r.vv.Covers(f.Dot()) {
		return
	}
	if !w.policy(f.Section, f.Dot().Origin) {
		_, err := r.doc.MergeChecked(f, w.policy)
		if !errors.Is(err, ErrForbiddenOrigin) {
			w.t.Fatalf("forbidden field not rejected: %v", err)
		}
		w.rejected[r.id]++
		return
	}
	k := f.Key()
	for _, h := range []HLC{k.Session, k.TS} {
		if err := r.clk.Observe(h); err != nil {
			w.t.Fatalf("observe at %s: %v", r.id, err)
		}
	}
	if _, err := r.doc.MergeChecked(f, w.policy); err != nil {
		w.t.Fatalf("merge at %s: %v", r.id, err)
	}
	r.shadow.Merge(f)
	r.maxSeen[f.Section] = maxKey(r.maxSeen[f.Section], k)
	if f.IsClear {
		r.clears = append(r.clears, f)
	}
}

// deliver picks any in-flight message (reordering), delivers a prefix of
// its chunks (truncation), maybe twice (duplication), and maybe keeps it in
// flight for a later duplicate.
func (w *world) deliver() {
	if len(w.net) == 0 {
		return
	}
	i := rapid.IntRange(0, len(w.net)-1).Draw(w.t, "msg")
	m := w.net[i]
	if rapid.IntRange(0, 5).Draw(w.t, "keep") > 0 {
		w.net = slices.Delete(w.net, i, i+1)
	}
	if w.isSilent(m.from) {
		return
	}
	n := len(m.chunks)
	if rapid.Bool().Draw(w.t, "truncate") {
		n = rapid.IntRange(0, n).Draw(w.t, "prefix")
	}
	w.receive(m, m.chunks[:n])
	if n > 0 && rapid.IntRange(0, 3).Draw(w.t, "dup") == 0 {
		w.receive(m, m.chunks[:n])
	}
}

func (w *world) isSilent(id ReplicaID) bool {
	return w.opts.silent >= 0 && w.reps[w.opts.silent].id == id
}

// stable is the §3.5 rule at r (Stable) over the acks it holds from the
// other members.
func (w *world) stable(r *replica) func(Dot) bool {
	var acks []Ack
	for _, m := range w.reps {
		if m != r {
			acks = append(acks, Ack{Replica: m.id, VV: r.acks[m.id]})
		}
	}
	return Stable(r.vv, acks)
}

func (w *world) collect(r *replica) {
	before := render(r.doc)
	removed := r.doc.StableGC(w.stable(r))
	if after := render(r.doc); after != before {
		w.t.Fatalf("prop 8: GC at %s changed visible state\nbefore %s\nafter  %s", r.id, before, after)
	}
	if w.isSilent(r.id) {
		return // it hears everyone, so it may well see stability
	}
	for _, f := range removed {
		if !f.Key().Less(ancestorClear(r.doc.secs[f.Section], f.Path)) {
			w.gcDrops = append(w.gcDrops, f) // not hidden: dropped as stable
		}
	}
	if w.opts.silent >= 0 {
		w.checkOnlyHiddenDropped(r, removed)
	}
}

// checkOnlyHiddenDropped: with a silent member nothing is stable, so every
// removed field must have been hidden by a clear that is still there.
func (w *world) checkOnlyHiddenDropped(r *replica, removed []Field) {
	for _, f := range removed {
		if !f.Key().Less(ancestorClear(r.doc.secs[f.Section], f.Path)) {
			w.t.Fatalf("prop 8: dropped %s %q (%v) with a silent member", f.Section, f.Path, f.Key())
		}
	}
}

// render is the canonical visible state of every section plus Effective.
func render(d *Doc) string {
	return fmt.Sprintf("%s|%s|%s|%s", canon(d.Visible(Tags)), canon(d.Visible(Desired)),
		canon(d.Visible(Reported)), canon(d.Effective()))
}

func (w *world) step() {
	r := rapid.IntRange(0, len(w.reps)-1).Draw(w.t, "replica")
	switch a := rapid.IntRange(0, 12).Draw(w.t, "action"); {
	case a < 3:
		w.localOp(w.reps[r])
	case a < 4:
		w.jump(w.reps[r])
	case a < 7:
		to := rapid.IntRange(0, len(w.reps)-1).Draw(w.t, "to")
		if to != r {
			w.send(r, to, rapid.IntRange(1, 5).Draw(w.t, "chunk"))
		}
	case a < 9:
		w.deliver()
	case a < 10:
		to := rapid.IntRange(0, len(w.reps)-1).Draw(w.t, "to")
		if to != r {
			w.staleReplay(r, to)
		}
	case a < 11:
		s := w.reps[r]
		s.snapshots = append(s.snapshots, snapshot{fields: s.doc.Delta(VV{}), vv: s.vv.Clone()})
	case a < 12:
		if w.opts.gc {
			w.collect(w.reps[r])
		}
	default:
		w.gossip()
	}
	if w.opts.gc {
		for _, r := range w.reps {
			if got, want := render(r.doc), render(r.shadow); got != want {
				w.t.Fatalf("prop 8: %s differs from its GC-free shadow\ngot  %s\nwant %s", r.id, got, want)
			}
		}
	}
	w.checkNoResurrection()
}

// jump moves a physical clock adversarially, staying within the 24 h hard
// limit of every other replica so that no batch is refused forever.
func (w *world) jump(r *replica) {
	r.phys.jump(w.t)
	if r.phys.ms >= minTrusted {
		r.phys.ms = min(max(r.phys.ms, baseMs-6*3_600_000), baseMs+6*3_600_000)
	}
}

// checkNoResurrection (prop 4): nothing visible is older than a clear the
// replica has merged on its path, even after GC dropped that clear.
func (w *world) checkNoResurrection() {
	for _, r := range w.reps {
		for _, c := range r.clears {
			for _, e := range r.doc.visible(c.Section) {
				if isPrefix(c.Path, e.path) && e.w.K.Less(c.C.K) {
					w.t.Fatalf("prop 4: %s shows %s %q at %v under clear %q at %v",
						r.id, c.Section, e.path, e.w.K, c.Path, c.C.K)
				}
			}
		}
	}
}

func (w *world) run() {
	for range w.opts.steps {
		w.step()
	}
	w.antiEntropy()
}

// antiEntropy heals the network: rounds of complete all-pairs syncs, which
// also spread acks, until every replica holds the same VV.
func (w *world) antiEntropy() {
	w.opts.silent = -1
	for _, r := range w.reps {
		r.phys.ms = baseMs + 7*3_600_000
	}
	for range 3 {
		w.gossip()
	}
}

// gossip runs one round of complete all-pairs syncs (minus the silent
// member's messages), which spreads both state and acks.
func (w *world) gossip() {
	for i := range w.reps {
		for j := range w.reps {
			if i != j && !w.isSilent(w.reps[i].id) {
				w.send(i, j, 1<<30)
				m := w.net[len(w.net)-1]
				w.net = w.net[:len(w.net)-1]
				w.receive(m, m.chunks)
			}
		}
	}
}

// accepted returns the non-forged ops of sec sorted by key.
func (w *world) accepted(sec Section) []simOp {
	var out []simOp
	for _, op := range w.ops {
		if op.sec == sec && !op.forged {
			out = append(out, op)
		}
	}
	slices.SortFunc(out, func(a, b simOp) int { return a.key.Compare(b.key) })
	return out
}

// checkSpec (prop 3): every replica's visible sections equal the replay.
func (w *world) checkSpec() {
	for _, sec := range []Section{Tags, Desired, Reported} {
		want := canon(oracleDoc(w.accepted(sec)))
		for _, r := range w.reps {
			if got := canon(r.doc.Visible(sec)); got != want {
				w.t.Fatalf("prop 3: %s %s\ngot  %s\nwant %s", r.id, sec, got, want)
			}
		}
	}
}

// checkConverged (prop 2): identical VVs and canonical JSON; identical
// registers when nothing was collected.
func (w *world) checkConverged(registers bool) {
	r0 := w.reps[0]
	for _, r := range w.reps[1:] {
		if canon(r.vv) != canon(r0.vv) {
			w.t.Fatalf("prop 2: VV %s %v vs %s %v", r.id, r.vv, r0.id, r0.vv)
		}
		if render(r.doc) != render(r0.doc) {
			w.t.Fatalf("prop 2: %s and %s render differently\n%s\n%s", r.id, r0.id, render(r.doc), render(r0.doc))
		}
		if registers && !r.doc.Equal(r0.doc) {
			w.t.Fatalf("prop 2: %s and %s hold different registers", r.id, r0.id)
		}
	}
}
