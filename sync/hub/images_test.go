package hub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// imageFixture is a hub with its image store in a test directory, a clock
// that moves one second per reading, and the devices of newFixture.
func imageFixture(t *testing.T, maxSize int64) (*fixture, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "images")
	var tick atomic.Int64
	start := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	now := func() time.Time { return start.Add(time.Duration(tick.Add(1)) * time.Second) }
	return newFixtureWith(t, Options{ImageDir: dir, MaxImageSize: maxSize, Now: now}), dir
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

var octet = map[string]string{"Content-Type": "application/octet-stream"}

func pushImage(t *testing.T, f *fixture, body []byte) (int, Image) {
	t.Helper()
	code, data := f.do(t, "POST", "/images", ownerToken(), body, octet)
	var img Image
	if code < 300 {
		if err := json.Unmarshal(data, &img); err != nil {
			t.Fatalf("POST /images answer %s: %v", data, err)
		}
	}
	return code, img
}

// dirNames lists dir, so a test sees leftovers (temp files) too.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestImagesPushGetListDelete: a push is stored under its sha256 as a file,
// served back byte for byte, listed oldest first, idempotent, and deleted.
func TestImagesPushGetListDelete(t *testing.T) {
	f, dir := imageFixture(t, 0)
	a := bytes.Repeat([]byte("#!/bin/sh\necho a\n"), 1000)
	b := []byte("PK\x03\x04 not really a zip")

	code, img := pushImage(t, f, a)
	if code != 201 || img.Digest != digestOf(a) || img.Size != int64(len(a)) {
		t.Fatalf("push: %d %+v, want 201 %s size %d", code, img, digestOf(a), len(a))
	}
	code, raw := f.do(t, "POST", "/images", ownerToken(), a, octet)
	want := fmt.Sprintf(`{"digest":%q,"size":17000,"created":%q}`+"\n", digestOf(a), img.Created.Format(time.RFC3339))
	if code != 200 || string(raw) != want {
		t.Errorf("identical push: %d %s\nwant 200 %s", code, raw, want)
	}
	if code, imgB := pushImage(t, f, b); code != 201 || imgB.Digest != digestOf(b) || !imgB.Created.After(img.Created) {
		t.Fatalf("push b: %d %+v", code, imgB)
	}
	if names := dirNames(t, dir); len(names) != 2 || names[0] != "sha256-"+digestOf(a)[7:] && names[1] != "sha256-"+digestOf(a)[7:] {
		t.Errorf("files in the image dir: %v", names)
	}
	onDisk, err := os.ReadFile(filepath.Join(dir, "sha256-"+digestOf(a)[7:]))
	if err != nil || !bytes.Equal(onDisk, a) {
		t.Errorf("the file on disk differs from the push (%v)", err)
	}

	code, got := f.do(t, "GET", "/images/"+digestOf(a), ownerToken(), nil, nil)
	if code != 200 || !bytes.Equal(got, a) {
		t.Errorf("GET: %d, %d bytes, want the %d pushed", code, len(got), len(a))
	}
	code, raw = f.do(t, "GET", "/images", ownerToken(), nil, nil)
	var list []Image
	if err := json.Unmarshal(raw, &list); code != 200 || err != nil || len(list) != 2 ||
		list[0].Digest != digestOf(a) || list[1].Digest != digestOf(b) || !list[0].Created.Equal(img.Created) {
		t.Fatalf("list: %d %s (%v)", code, raw, err)
	}

	if code, body := f.do(t, "DELETE", "/images/"+digestOf(a), ownerToken(), nil, nil); code != 204 {
		t.Fatalf("delete: %d %s", code, body)
	}
	code, body := f.do(t, "GET", "/images/"+digestOf(a), ownerToken(), nil, nil)
	if code != 404 || !strings.Contains(string(body), `"code":"NotFound"`) || !strings.Contains(string(body), "not in the hub's image store") {
		t.Errorf("GET after delete: %d %s", code, body)
	}
	if code, _ := f.do(t, "DELETE", "/images/"+digestOf(a), ownerToken(), nil, nil); code != 404 {
		t.Errorf("second delete: %d, want 404", code)
	}
	if code, raw := f.do(t, "GET", "/images", ownerToken(), nil, nil); code != 200 || !strings.Contains(string(raw), digestOf(b)) || strings.Contains(string(raw), digestOf(a)) {
		t.Errorf("list after delete: %s", raw)
	}

	_, metrics := f.do(t, "GET", "/metrics", ownerToken(), nil, nil)
	for _, want := range []string{"outpost_hub_images_pushed_total 3\n", fmt.Sprintf("outpost_hub_image_bytes_pushed_total %d\n", 2*len(a)+len(b))} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestImagesRange: GET serves Range and conditional requests.
func TestImagesRange(t *testing.T) {
	f, _ := imageFixture(t, 0)
	data := make([]byte, 4096)
	for i := range data {
		data[i] = byte(i * 7)
	}
	copy(data, "\x7fELF")
	_, img := pushImage(t, f, data)
	for _, path := range []string{"/images/" + img.Digest, protocol.PathImages + "/" + img.Digest} {
		tok := ownerToken()
		if strings.HasPrefix(path, "/sync/") {
			tok = f.edgeToken()
		}
		code, got := f.do(t, "GET", path, tok, nil, map[string]string{"Range": "bytes=1000-1999"})
		if code != 206 || !bytes.Equal(got, data[1000:2000]) {
			t.Errorf("%s Range: %d, %d bytes", path, code, len(got))
		}
		code, got = f.do(t, "GET", path, tok, nil, map[string]string{"Range": "bytes=4000-"})
		if code != 206 || !bytes.Equal(got, data[4000:]) {
			t.Errorf("%s open Range: %d, %d bytes", path, code, len(got))
		}
		if code, _ := f.do(t, "GET", path, tok, nil, map[string]string{"If-None-Match": `"` + img.Digest + `"`}); code != 304 {
			t.Errorf("%s If-None-Match: %d, want 304", path, code)
		}
	}
}

// TestImagesSizeLimit: a push over MaxImageSize is refused with 413 whether
// it announces its length or not, and leaves no file behind.
func TestImagesSizeLimit(t *testing.T) {
	const limit = 1 << 20
	f, dir := imageFixture(t, limit)
	big := append([]byte("#!"), bytes.Repeat([]byte("x"), 4*limit)...)
	code, body := f.do(t, "POST", "/images", ownerToken(), big, octet)
	if code != 413 || !strings.Contains(string(body), `"code":"RequestEntityTooLarge"`) || !strings.Contains(string(body), "at most 1048576 bytes (1 MiB") {
		t.Errorf("with Content-Length: %d %s", code, body)
	}
	// Chunked: the hub finds out while reading.
	req, _ := http.NewRequest("POST", f.srv.URL+"/images", io.MultiReader(bytes.NewReader(big)))
	req.Header.Set("Authorization", ownerToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 || req.ContentLength != 0 || !strings.Contains(string(body), "at most 1048576 bytes (1 MiB") {
		t.Errorf("chunked: %d %s", resp.StatusCode, body)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("left behind: %v", names)
	}
	if code, _ := pushImage(t, f, big[:limit]); code != 201 {
		t.Errorf("an image of exactly the limit: %d", code)
	}
	_, metrics := f.do(t, "GET", "/metrics", ownerToken(), nil, nil)
	if !strings.Contains(string(metrics), "outpost_hub_images_refused_total 2\n") {
		t.Errorf("refusals not counted:\n%s", metrics)
	}
}

// TestImagesRefused: malformed digests, empty images and form uploads are
// 400s that say what is expected.
func TestImagesRefused(t *testing.T) {
	f, dir := imageFixture(t, 0)
	good := digestOf([]byte("x"))
	for _, d := range []string{
		"sha256:" + strings.ToUpper(good[7:]), good[:70], good + "0", "sha512:" + good[7:], good[7:],
		"sha256:" + good[8:] + "g", "sha256:..%2F..%2Fetc", "%20" + good,
	} {
		for _, c := range []struct{ method, path, tok string }{
			{"GET", "/images/" + d, ownerToken()}, {"DELETE", "/images/" + d, ownerToken()}, {"GET", protocol.PathImages + "/" + d, f.edgeToken()},
		} {
			code, body := f.do(t, c.method, c.path, c.tok, nil, nil)
			var e protocol.APIError
			if code != 400 || json.Unmarshal(body, &e) != nil || e.Code != "BadRequest" || !strings.Contains(e.Message, "want sha256:<64 lowercase hex>") {
				t.Errorf("%s %s: %d %s", c.method, c.path, code, body)
			}
		}
	}
	if code, body := f.do(t, "POST", "/images", ownerToken(), nil, octet); code != 400 || !strings.Contains(string(body), "the image is empty") {
		t.Errorf("empty push: %d %s", code, body)
	}
	code, body := f.do(t, "POST", "/images", ownerToken(), []byte("--b\r\n\r\nx\r\n--b--\r\n"), map[string]string{"Content-Type": "multipart/form-data; boundary=b"})
	if code != 400 || !strings.Contains(string(body), "--data-binary") {
		t.Errorf("form upload: %d %s", code, body)
	}
	// Neither an executable nor an archive: refused, whatever its length.
	for _, data := range [][]byte{[]byte("hello"), []byte(`{"modulesContent":{}}`), bytes.Repeat([]byte{0}, 100000)} {
		code, body := f.do(t, "POST", "/images", ownerToken(), data, octet)
		e := protocol.ReadError(code, body)
		if code != 400 || e.Code != "BadRequest" || !strings.Contains(e.Message, "neither an executable nor an archive") {
			t.Errorf("push of %.10q…: %d %s", data, code, body)
		}
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("left behind: %v", names)
	}
}

// TestImagesAuth: /images takes the owner's token only; the link path takes
// an enabled edge device's token only.
func TestImagesAuth(t *testing.T) {
	f, dir := imageFixture(t, 0)
	data := []byte("#!/bin/sh\necho an image\n")
	_, img := pushImage(t, f, data)
	dev, _ := f.h.Identity("dev1")
	other, _ := f.h.Identity("other")
	leafTok := sas.NewToken("hub.test/devices/dev1", dev.Auth.PrimaryKey, "", time.Now().Add(time.Hour))
	otherTok := sas.NewToken("hub.test/devices/other", other.Auth.PrimaryKey, "", time.Now().Add(time.Hour))
	for name, tok := range map[string]string{
		"none": "", "edge device": f.edgeToken(), "wrong key": sas.NewToken("hub.test", []byte("nope"), "owner", time.Now().Add(time.Hour)),
	} {
		for _, c := range []struct{ method, path string }{{"POST", "/images"}, {"GET", "/images"}, {"GET", "/images/" + img.Digest}, {"DELETE", "/images/" + img.Digest}} {
			if code, body := f.do(t, c.method, c.path, tok, []byte("other image"), octet); code != 401 {
				t.Errorf("%s: %s %s: %d %s, want 401", name, c.method, c.path, code, body)
			}
		}
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("an unauthenticated request changed the store: %v", names)
	}

	link := protocol.PathImages + "/" + img.Digest
	if code, got := f.do(t, "GET", link, f.edgeToken(), nil, nil); code != 200 || !bytes.Equal(got, data) {
		t.Errorf("edge: %d %q", code, got)
	}
	for name, c := range map[string]struct {
		tok  string
		want int
	}{
		"owner": {ownerToken(), 401}, "none": {"", 401}, "leaf device": {leafTok, 403}, "device without a parent": {otherTok, 403},
		"edge with a wrong key": {sas.NewToken("hub.test/devices/gw1", []byte("nope"), "", time.Now().Add(time.Hour)), 401},
	} {
		if code, body := f.do(t, "GET", link, c.tok, nil, nil); code != c.want || bytes.Contains(body, data) {
			t.Errorf("%s on the link: %d %s, want %d", name, code, body, c.want)
		}
	}
	if code, body := f.do(t, "GET", protocol.PathImages+"/"+digestOf([]byte("absent")), f.edgeToken(), nil, nil); code != 404 || !strings.Contains(string(body), "NotFound") {
		t.Errorf("unknown image on the link: %d %s", code, body)
	}
	_, metrics := f.do(t, "GET", "/metrics", ownerToken(), nil, nil)
	if !strings.Contains(string(metrics), "outpost_hub_images_fetched_total 1\n") {
		t.Errorf("fetch not counted")
	}
}

// TestImagesDirLifecycle: an in-memory hub's image dir goes with Close; a
// push a crash interrupted is cleaned up on Open; images outlive a restart.
func TestImagesDirLifecycle(t *testing.T) {
	ctx := context.Background()
	h, err := Open(ctx, "", Options{HostName: "hub.test", OwnerKey: ownerKey, InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.PushImage(ctx, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	tmp := h.images.dir
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("the temporary image dir %s outlived Close: %v", tmp, err)
	}

	dir := t.TempDir()
	h, err = Open(ctx, dir, Options{HostName: "hub.test", OwnerKey: ownerKey})
	if err != nil {
		t.Fatal(err)
	}
	img, _, err := h.PushImage(ctx, strings.NewReader("kept"))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	images := filepath.Join(dir, "images")
	if err := os.WriteFile(filepath.Join(images, ".push-123"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err = Open(ctx, dir, Options{HostName: "hub.test", OwnerKey: ownerKey})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if names := dirNames(t, images); len(names) != 1 || names[0] != "sha256-"+img.Digest[7:] {
		t.Errorf("after a restart: %v", names)
	}
	if list, err := h.Images(); err != nil || len(list) != 1 || list[0] != img {
		t.Errorf("Images() = %v, %v; want [%v]", list, err, img)
	}
}
