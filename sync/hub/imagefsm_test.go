package hub

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/kv"
)

func openTestFSM(t *testing.T) *FSM {
	t.Helper()
	db, err := kv.Open("", kv.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	f, err := OpenFSM(context.Background(), db, FSMOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func applyCmd(t *testing.T, f *FSM, cmd any) error {
	t.Helper()
	entry, err := encodeCommand(cmd, 1700000000000)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Apply(entry)
	return err
}

type imageEvent struct {
	digest  string
	deleted bool
}

// TestImageCommands: putImage records an image once (the first record
// stays), deleteImage removes it, both tell the hub, bad commands change
// nothing, and the records travel in a snapshot.
func TestImageCommands(t *testing.T) {
	f := openTestFSM(t)
	var events []imageEvent
	f.onImage = func(d string, del bool) { events = append(events, imageEvent{d, del}) }
	a, b := digestOf([]byte("a")), digestOf([]byte("b"))
	for _, c := range []putImage{{Digest: b, Size: 2, Created: 2000}, {Digest: a, Size: 1, Created: 3000}, {Digest: b, Size: 2, Created: 9000}} {
		if err := applyCmd(t, f, c); err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
	}
	want := []Image{{Digest: b, Size: 2, Created: time.UnixMilli(2000).UTC()}, {Digest: a, Size: 1, Created: time.UnixMilli(3000).UTC()}}
	if got, err := f.Images(); err != nil || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("Images() = %v, %v; want %v (oldest first, the first record of b kept)", got, err, want)
	}
	for name, c := range map[string]any{
		"bad digest":    putImage{Digest: "sha256:xyz", Size: 1},
		"no size":       putImage{Digest: digestOf([]byte("c")), Size: 0},
		"delete absent": deleteImage{Digest: digestOf([]byte("c"))},
		"delete bad":    deleteImage{Digest: "md5:00"},
	} {
		err := applyCmd(t, f, c)
		if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v, want ErrInvalid or ErrNotFound", name, err)
		}
	}
	if err := applyCmd(t, f, deleteImage{Digest: b}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := f.Image(b); ok || err != nil {
		t.Fatalf("b after its delete: %v %v", ok, err)
	}
	wantEvents := []imageEvent{{b, false}, {a, false}, {b, true}}
	if len(events) != len(wantEvents) || events[0] != wantEvents[0] || events[1] != wantEvents[1] || events[2] != wantEvents[2] {
		t.Errorf("the hub was told %v, want %v", events, wantEvents)
	}
	var snap bytes.Buffer
	if err := f.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	g := openTestFSM(t)
	if err := g.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	if got, err := g.Images(); err != nil || len(got) != 1 || got[0] != want[1] {
		t.Errorf("restored Images() = %v, %v; want [%v]", got, err, want[1])
	}
}

// TestImagesAdoptedOnOpen: a single hub, and a clustered node that has
// applied no log entry yet (a single hub's data turned into a cluster's
// first node), record the image files of a store from before image
// records.
func TestImagesAdoptedOnOpen(t *testing.T) {
	for _, clustered := range []bool{false, true} {
		dir := t.TempDir()
		images := filepath.Join(dir, "images")
		if err := os.MkdirAll(images, 0o700); err != nil {
			t.Fatal(err)
		}
		data := []byte("#!/bin/sh\necho old\n")
		d := digestOf(data)
		file := filepath.Join(images, "sha256-"+d[7:])
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		then := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
		if err := os.Chtimes(file, then, then); err != nil {
			t.Fatal(err)
		}
		h, err := Open(context.Background(), filepath.Join(dir, "store"), Options{HostName: "hub.test", OwnerKey: ownerKey, ImageDir: images, Clustered: clustered})
		if err != nil {
			t.Fatal(err)
		}
		want := Image{Digest: d, Size: int64(len(data)), Created: then}
		if got, err := h.Images(); err != nil || len(got) != 1 || got[0] != want {
			t.Errorf("clustered %v: Images() = %v, %v; want [%v]", clustered, got, err, want)
		}
		_ = h.Close()
	}
}

// clusteredImageHub is a clustered hub without a cluster: enough for the
// node-local image endpoints and the image sync's orphan collection.
func clusteredImageHub(t *testing.T, dir string) (*Hub, *httptest.Server) {
	t.Helper()
	h, err := Open(context.Background(), "", Options{HostName: "hub.test", OwnerKey: ownerKey, InMemory: true, ImageDir: dir, Clustered: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h.Handler())
	t.Cleanup(func() { h.Stop(); srv.Close(); _ = h.Close() })
	return h, srv
}

func request(t *testing.T, method, url, auth string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// TestClusterImageEndpoints: a node stores a copy only with the owner's
// token and only when the bytes hash to the digest named, and serves its
// files to other nodes; a single hub has no such endpoints.
func TestClusterImageEndpoints(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "images")
	_, srv := clusteredImageHub(t, dir)
	data := []byte("#!/bin/sh\necho copy\n")
	d := digestOf(data)
	url := srv.URL + clusterImages + d
	if code, body := request(t, "POST", url, "", data); code != 401 {
		t.Errorf("copy without a token: %d %s", code, body)
	}
	if code, body := request(t, "POST", url, ownerToken(), []byte("#!/bin/sh\necho damaged\n")); code != 400 || !strings.Contains(string(body), "damaged") {
		t.Errorf("damaged copy: %d %s, want 400", code, body)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Fatalf("a refused copy left %v", names)
	}
	if code, body := request(t, "POST", url, ownerToken(), data); code != 201 {
		t.Fatalf("copy: %d %s", code, body)
	}
	// A copy of an image the node holds is answered before its bytes go.
	body := &countingReader{r: bytes.NewReader(data)}
	req, _ := http.NewRequest("POST", url, body)
	req.ContentLength = int64(len(data))
	req.Header.Set("Authorization", ownerToken())
	req.Header.Set("Expect", "100-continue")
	resp, err := (&http.Client{Transport: &http.Transport{ExpectContinueTimeout: 10 * time.Second}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || body.n != 0 {
		t.Errorf("copy of a held image: %d after %d bytes were sent, want 200 before any", resp.StatusCode, body.n)
	}
	if code, body := request(t, "GET", url, "", nil); code != 401 {
		t.Errorf("GET the copy without a token: %d %s", code, body)
	}
	if code, body := request(t, "GET", url, ownerToken(), nil); code != 200 || !bytes.Equal(body, data) {
		t.Errorf("GET the copy: %d %q", code, body)
	}
	if code, _ := request(t, "GET", srv.URL+"/images/"+d, ownerToken(), nil); code != 404 {
		t.Errorf("GET /images of a file without a record: %d, want 404", code)
	}

	single := newFixtureWith(t, Options{})
	if code, _ := single.do(t, "POST", clusterImages+d, ownerToken(), data, octet); code != 404 {
		t.Errorf("a single hub took a node-to-node copy: %d", code)
	}
}

// TestImageSyncRemovesOldOrphans: a clustered node removes the files
// nothing records once they are older than orphanGrace, and keeps younger
// ones (a push whose record is on its way) — once it has caught up with
// the cluster: before that, a file may be a copy whose record it has not
// applied yet.
func TestImageSyncRemovesOldOrphans(t *testing.T) {
	dir := t.TempDir()
	images, store := filepath.Join(dir, "images"), filepath.Join(dir, "store")
	opts := Options{HostName: "hub.test", OwnerKey: ownerKey, ImageDir: images, Clustered: true}
	h, err := Open(context.Background(), store, opts)
	if err != nil {
		t.Fatal(err)
	}
	h.FSM().ApplyEntries([]LogEntry{{Index: 1}}) // a node of a cluster: it adopts no files
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	old, young := digestOf([]byte("old")), digestOf([]byte("young"))
	for _, d := range []string{old, young} {
		if err := os.WriteFile(filepath.Join(images, "sha256-"+d[7:]), []byte(d), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	then := time.Now().Add(-orphanGrace - time.Minute)
	if err := os.Chtimes(filepath.Join(images, "sha256-"+old[7:]), then, then); err != nil {
		t.Fatal(err)
	}
	if h, err = Open(context.Background(), store, opts); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lag := &standInLog{}
	h.SetCluster(lag)
	if err := h.syncImagesOnce(); err != nil {
		t.Fatal(err)
	}
	if !h.images.has(old) {
		t.Fatal("a node that has not caught up removed an orphan")
	}
	lag.caughtUp.Store(true)
	h.kickImageSync()
	deadline := time.Now().Add(10 * time.Second)
	for h.images.has(old) {
		if time.Now().After(deadline) {
			t.Fatal("the old orphan is still there after 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !h.images.has(young) {
		t.Error("the young orphan was removed")
	}
	if imgs, err := h.Images(); err != nil || len(imgs) != 0 {
		t.Errorf("a clustered node adopted orphans: %v %v", imgs, err)
	}
}

// standInLog is the replicated log of a node that never leads and has
// caught up when the test says so (the image sync asks nothing else).
type standInLog struct{ caughtUp atomic.Bool }

func (*standInLog) ID() string { return "n1" }
func (*standInLog) Apply(context.Context, []byte) (any, error) {
	return nil, ErrNotLeader
}
func (*standInLog) VerifyLeader(context.Context) error { return ErrNotLeader }
func (*standInLog) IsLeader() bool                     { return false }
func (*standInLog) LeaderID() string                   { return "" }
func (l *standInLog) CaughtUp() bool                   { return l.caughtUp.Load() }

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestEmptyCountsImages: a state that records an image is not empty (a
// node with it would join with records the cluster's log does not hold).
func TestEmptyCountsImages(t *testing.T) {
	f := openTestFSM(t)
	if empty, err := f.Empty(); err != nil || !empty {
		t.Fatalf("a new state: Empty() = %v, %v", empty, err)
	}
	if err := applyCmd(t, f, putImage{Digest: digestOf([]byte("x")), Size: 1, Created: 1}); err != nil {
		t.Fatal(err)
	}
	if empty, err := f.Empty(); err != nil || empty {
		t.Fatalf("a state with an image record: Empty() = %v, %v", empty, err)
	}
}
