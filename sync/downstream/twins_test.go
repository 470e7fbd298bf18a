package downstream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/crdt"
	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/store/kv"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// withTwins gives the parent a twin store (edge l4's replica) and serves
// twins; it returns the store.
func (p *parent) withTwins(t *testing.T) *twin.Store {
	t.Helper()
	tw, err := twin.Open(context.Background(), p.db, twin.Options{Role: twin.Edge, Name: "l4"})
	if err != nil {
		t.Fatal(err)
	}
	p.http.Close()
	if p.srv, err = New(Options{Edge: "l4", HostName: hostName, DB: p.db, Queues: p.queues, Identities: p.ids, Replica: string(tw.Replica()),
		Twins: tw, PullWait: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	p.http = httptest.NewServer(p.srv.Handler())
	return tw
}

// hubDesired writes a desired patch at a cloud replica and merges it into
// the parent's store, as the parent's link does with the hub's push.
func hubDesired(t *testing.T, into *twin.Store, id, patch string) {
	t.Helper()
	ctx := context.Background()
	db, err := kv.Open(t.TempDir(), kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	hub, err := twin.Open(ctx, db, twin.Options{Role: twin.Cloud, Name: "hub"})
	if err != nil {
		t.Fatal(err)
	}
	if err := hub.Ensure(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := hub.PatchDesired(ctx, id, []byte(patch)); err != nil {
		t.Fatal(err)
	}
	b, _, err := hub.Delta(into.VV(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := into.ApplyDelta(ctx, b); err != nil {
		t.Fatal(err)
	}
}

func reported(t *testing.T, s *twin.Store, id string) string {
	t.Helper()
	v, err := s.Get(id)
	if err != nil {
		return ""
	}
	return string(v.ServiceJSON())
}

// Twins cross a parent both ways as CRDT replicas: a desired change the
// parent holds (from the hub) reaches the child; a reported change made
// under the child is at the parent at once, with the child's replica id
// and stamps, and the parent's link would send it up (Forwards). A child
// cannot write for a twin outside the subtree of the edge that wrote it.
func TestTwinsThroughParent(t *testing.T) {
	p := openParent(t, t.TempDir())
	defer p.close()
	tw := p.withTwins(t)
	hubDesired(t, tw, "dev1", `{"rate":5}`)
	c := startChild(t, p.http.URL)
	eventually(t, "the hub's desired at the child", func() bool { return strings.Contains(reported(t, c.twins, "dev1"), `"rate":5`) })

	hlc, err := c.twins.BeginSession()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.twins.PatchReported(context.Background(), "dev1", hlc, []byte(`{"temp":21}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the child's reported at the parent", func() bool { return strings.Contains(reported(t, tw, "dev1"), `"temp":21`) })
	if st := c.link.Status(); st.TwinsNotServed != "" || st.State != "online" {
		t.Errorf("child link: %+v", st)
	}
	fields, err := tw.Fields("dev1", "")
	if err != nil {
		t.Fatal(err)
	}
	var origin string
	for _, f := range fields {
		if strings.Contains(f.Path, "temp") {
			origin = f.Origin
		}
	}
	if origin != string(c.twins.Replica()) {
		t.Errorf("the parent holds the child's field as written by %q, want the child's replica %q (not re-stamped)", origin, c.twins.Replica())
	}
	if !p.srv.Forwards(c.twins.Replica()) || !p.srv.Forwards("edge:l2.a1") || !p.srv.Forwards("edge:ox.a1") ||
		p.srv.Forwards(tw.Replica()) || p.srv.Forwards("edge:zz.a1") || p.srv.Forwards("hub.x1") {
		t.Error("Forwards: want the incarnations of edges below l4 only (not l4's own, not an unknown edge's, not the hub's)")
	}

	// Fields the child may not send: refused whole, nothing merged.
	bad := func(origin crdt.ReplicaID, id string) protocol.TwinsUp {
		ts := crdt.HLC{Wall: time.Now().UnixMilli()}
		f := crdt.Field{Section: crdt.Reported, Path: crdt.Path{"x"},
			W: crdt.Write{K: crdt.Key{Session: ts, TS: ts, Origin: origin}, D: crdt.Dot{Origin: origin, Seq: 1}, Kind: crdt.Val, Value: []byte(`1`)}}
		return protocol.TwinsUp{Instance: "edge:l3.a1", Batch: twin.Batch{Twins: []twin.TwinDelta{{ID: id, Fields: []crdt.Field{f}}}}}
	}
	for name, up := range map[string]protocol.TwinsUp{
		"a field by another edge":                bad("edge:ox.a1", "dev1"),
		"a field for a twin outside the subtree": bad("edge:l3.a1", "other"),
		"l2's field for l3's own device":         bad("edge:l2.a1", "dev1"),
		"a field by the hub":                     bad("hub.x1", "dev1"),
		"l3's stamp on the hub's dot": func() protocol.TwinsUp {
			up := bad("edge:l3.a1", "dev1")
			up.Batch.Twins[0].Fields[0].W.D.Origin = "hub.x1"
			up.Batch.Twins[0].Fields[0].Section = crdt.Desired
			return up
		}(),
	} {
		if st := post(t, p.http.URL, protocol.PathTwins, "l3", keyL3, up, nil); st != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", name, st)
		}
	}
	if r := reported(t, tw, "other"); strings.Contains(r, `"x"`) {
		t.Errorf("a refused field was merged: %s", r)
	}
}

// Tombstones of a twin below a child wait for that child's ack.
func TestChildMembers(t *testing.T) {
	p := openParent(t, t.TempDir())
	defer p.close()
	for id, want := range map[string]string{"dev1": "child:l3", "l3/m": "child:l3", "dev2": "child:l3", "l2": "child:l3",
		"other": "", "l4": "", "ox": "child:ox", "nobody": ""} {
		if got := strings.Join(p.srv.ChildMembers(id), ","); got != want {
			t.Errorf("ChildMembers(%s) = %q, want %q", id, got, want)
		}
	}
}

// A child fetches a module image through its parent, which serves it from
// its cache (fetching it upstream first when missing, Options.Image); an
// image the parent cannot get is 404; only a child gets it.
func TestImageThroughParent(t *testing.T) {
	p := openParent(t, t.TempDir())
	defer p.close()
	blob := []byte("#!/bin/sh\necho module\n")
	sum := sha256.Sum256(blob)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, blob, 0o600); err != nil {
		t.Fatal(err)
	}
	asked := 0
	p.http.Close()
	var err error
	if p.srv, err = New(Options{Edge: "l4", HostName: hostName, DB: p.db, Queues: p.queues, Identities: p.ids,
		Image: func(_ context.Context, d string) (string, error) {
			asked++
			if d != digest {
				return "", fmt.Errorf("not in the hub's store")
			}
			return path, nil
		}}); err != nil {
		t.Fatal(err)
	}
	p.http = httptest.NewServer(p.srv.Handler())
	c := startChild(t, p.http.URL)
	var buf bytes.Buffer
	if n, err := c.link.FetchImage(context.Background(), digest, &buf); err != nil || n != int64(len(blob)) || !bytes.Equal(buf.Bytes(), blob) {
		t.Fatalf("fetch through the parent: %d bytes, %v", n, err)
	}
	other := "sha256:" + strings.Repeat("0", 64)
	if _, err := c.link.FetchImage(context.Background(), other, io.Discard); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("an image the parent cannot get: %v, want 404", err)
	}
	req, _ := http.NewRequest(http.MethodGet, p.http.URL+protocol.PathImages+"/"+digest, nil)
	req.Header.Set("Authorization", sas.NewToken(sas.ResourceURI(hostName, "dev1", ""), []byte("d1"), "", time.Now().Add(time.Hour)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || asked != 2 {
		t.Errorf("a leaf device asking for an image: %d (the parent looked %d times, want 2)", resp.StatusCode, asked)
	}
}

// A child that stops reading an image is cut off after imageStall: a
// transfer may be long, but not stalled.
func TestStalledImageReaderCut(t *testing.T) {
	old := imageStall
	imageStall = 200 * time.Millisecond
	defer func() { imageStall = old }()
	p := openParent(t, t.TempDir())
	defer p.close()
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, bytes.Repeat([]byte("x"), 64<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	p.http.Close()
	var err error
	if p.srv, err = New(Options{Edge: "l4", HostName: hostName, DB: p.db, Queues: p.queues, Identities: p.ids,
		Image: func(context.Context, string) (string, error) { return path, nil }}); err != nil {
		t.Fatal(err)
	}
	p.http = httptest.NewServer(p.srv.Handler())
	req, _ := http.NewRequest(http.MethodGet, p.http.URL+protocol.PathImages+"/sha256:"+strings.Repeat("a", 64), nil)
	req.Header.Set("Authorization", sas.NewToken(sas.ResourceURI(hostName, "l3", ""), keyL3, "", time.Now().Add(time.Hour)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	time.Sleep(1500 * time.Millisecond) // read nothing
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil || n >= 64<<20 {
		t.Fatalf("a stalled reader got %d bytes, err %v: want the transfer cut", n, err)
	}
}
