package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// mapFSM is the tests' state machine: a replicated map with a digest, and
// counters that tell how its state arrived (log replay or snapshot restore).
type mapFSM struct {
	mu       sync.Mutex
	m        map[string]string
	minIndex uint64 // lowest log index applied since the last Restore
	applied  atomic.Int64
	restored atomic.Int64
}

func newMapFSM() *mapFSM { return &mapFSM{m: map[string]string{}} }

func (f *mapFSM) Apply(l *raft.Log) any {
	k, v, _ := strings.Cut(string(l.Data), "=")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[k] = v
	if f.minIndex == 0 || l.Index < f.minIndex {
		f.minIndex = l.Index
	}
	f.applied.Add(1)
	return len(f.m)
}

func (f *mapFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := json.Marshal(f.m)
	return snap(b), err
}

func (f *mapFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	m := map[string]string{}
	if err := json.NewDecoder(rc).Decode(&m); err != nil {
		return err
	}
	f.mu.Lock()
	f.m, f.minIndex = m, 0
	f.mu.Unlock()
	f.restored.Add(1)
	return nil
}

func (f *mapFSM) digest() (string, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	keys := make([]string, 0, len(f.m))
	for k := range f.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		io.WriteString(h, k+"="+f.m[k]+"\n")
	}
	return hex.EncodeToString(h.Sum(nil)), len(keys)
}

func (f *mapFSM) lowestApplied() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.minIndex
}

type snap []byte

func (s snap) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (snap) Release() {}
