package clusterbench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/identity"
	synchub "github.com/outpost-edge/outpost/sync/hub"
	"github.com/outpost-edge/outpost/sync/protocol"
)

const (
	snapEvents = 1_000_000
	snapFrame  = 1000
)

// fillHub appends n events of about 100 bytes to h, in frames of
// snapFrame messages from one edge, as the link does (Hub.Messages: one
// appendEvents command per frame).
func fillHub(b *testing.B, ctx context.Context, h *synchub.Hub, n int) {
	gw, err := h.PutDevice(ctx, identity.JSON{DeviceID: "gw", Capabilities: &identity.Capabilities{IoTEdge: true}})
	check(b, err)
	_, err = h.PutDevice(ctx, identity.JSON{DeviceID: "dev", ParentScopes: []string{gw.DeviceScope}})
	check(b, err)
	now := time.Now().UnixMilli()
	for seq := uint64(1); seq <= uint64(n); {
		frame := protocol.Messages{Instance: "edge:gw.bench", Queue: "$upstream/pdefault", Msgs: make([]protocol.Message, 0, snapFrame)}
		for ; seq <= uint64(n) && len(frame.Msgs) < snapFrame; seq++ {
			frame.Msgs = append(frame.Msgs, protocol.Message{Seq: seq, ID: fmt.Sprint("m", seq), Source: "devices/dev", EnqueuedAt: now,
				Sys: map[string]string{"connectionDeviceId": "dev", "contentType": "application/json"}, Body: []byte(fmt.Sprintf(`{"seq":%d,"noise":"%s"}`, seq, randomHex(70)))})
		}
		ack, err := h.Messages(ctx, "gw", frame)
		check(b, err)
		if ack.Appended != len(frame.Msgs) {
			b.Fatalf("frame up to %d: %+v", seq-1, ack)
		}
	}
}

// BenchmarkSnapshot1M: a hub (sync/hub on disk, as `outpost hub` opens
// it) holding 1 000 000 events of about 100 bytes, appended in frames of
// 1000; the time to write a snapshot of its state machine to a file and
// sync it (FSM.View().Write, what a raft snapshot's Persist does:
// snapshot-s, snapshot-MB) and to restore that file into the state
// machine of a fresh hub (FSM.RestoreFrom, what a node that was down for
// long does on InstallSnapshot: restore-s).
func BenchmarkSnapshot1M(b *testing.B) {
	ctx := context.Background()
	b.StopTimer()
	opts := synchub.Options{HostName: hostName, OwnerKey: []byte("k"), Retention: -1, Logger: logger()}
	h, err := synchub.Open(ctx, filepath.Join(b.TempDir(), "full"), opts)
	check(b, err)
	defer h.Close()
	t0 := time.Now()
	fillHub(b, ctx, h, snapEvents)
	b.ReportMetric(snapEvents/time.Since(t0).Seconds(), "fill-events/s")
	for range b.N {
		snapshotOnce(b, ctx, h, opts)
	}
}

func snapshotOnce(b *testing.B, ctx context.Context, h *synchub.Hub, opts synchub.Options) {
	dir := b.TempDir()
	path := filepath.Join(dir, "snapshot")
	f, err := os.Create(path)
	check(b, err)
	b.StartTimer()
	t0 := time.Now()
	v := h.FSM().View()
	err = v.Write(f)
	v.Release()
	if err == nil {
		err = f.Sync()
	}
	snap := time.Since(t0)
	b.StopTimer()
	check(b, err)
	check(b, f.Close())
	st, err := os.Stat(path)
	check(b, err)

	fresh, err := synchub.Open(ctx, filepath.Join(dir, "fresh"), opts)
	check(b, err)
	defer fresh.Close()
	r, err := os.Open(path)
	check(b, err)
	defer r.Close()
	b.StartTimer()
	t0 = time.Now()
	err = fresh.FSM().RestoreFrom(r)
	restore := time.Since(t0)
	b.StopTimer()
	check(b, err)
	if fresh.LastSeq() != h.LastSeq() || h.LastSeq() < snapEvents {
		b.Fatalf("restored hub holds %d events, the hub %d (want %d)", fresh.LastSeq(), h.LastSeq(), snapEvents)
	}
	b.ReportMetric(snap.Seconds(), "snapshot-s")
	b.ReportMetric(float64(st.Size())/1e6, "snapshot-MB")
	b.ReportMetric(restore.Seconds(), "restore-s")
}
