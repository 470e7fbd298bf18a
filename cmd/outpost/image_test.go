package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
	synchub "github.com/outpost-edge/outpost/sync/hub"
)

// The image command against a real hub (sync/hub through httptest).

type imageHub struct {
	h   *synchub.Hub
	url string
}

func newImageHub(t *testing.T, maxSize int64) *imageHub {
	t.Helper()
	h, err := synchub.Open(context.Background(), "", synchub.Options{HostName: fakeHubHost, OwnerKey: fakeOwnerKey, InMemory: true,
		ImageDir: t.TempDir(), MaxImageSize: maxSize})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h.Handler())
	t.Cleanup(func() { h.Stop(); srv.Close(); _ = h.Close() })
	return &imageHub{h: h, url: srv.URL}
}

func (ih *imageHub) run(args ...string) (code int, stdout, stderr string) {
	env := map[string]string{
		"OUTPOST_HUB_CONNECTION_STRING": "HostName=" + fakeHubHost + ";SharedAccessKeyName=owner;SharedAccessKey=" + base64.StdEncoding.EncodeToString(fakeOwnerKey),
		"OUTPOST_HUB_URL":               ih.url,
	}
	var out, errb bytes.Buffer
	code = cli.Main(args, commands, cli.Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }})
	return code, out.String(), errb.String()
}

func (ih *imageHub) mustRun(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	code, out, errs := ih.run(args...)
	if code != 0 {
		t.Fatalf("outpost %s: exit %d\n%s", strings.Join(args, " "), code, errs)
	}
	return out, errs
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestImageCLI: push prints the hub's {"digest","size","created"} for the
// file's sha256 and stores it byte for byte; a second push is a no-op;
// list (JSON and table) and delete work.
func TestImageCLI(t *testing.T) {
	ih := newImageHub(t, 0)
	data := bytes.Repeat([]byte("\x7fELF\x00 binary\n"), 5000)
	sum := sha256.Sum256(data)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	file := writeFile(t, "app", data)

	out, errs := ih.mustRun(t, "image", "push", file)
	var img struct {
		Digest  string
		Size    int64
		Created time.Time
	}
	if err := json.Unmarshal([]byte(out), &img); err != nil || img.Digest != digest || img.Size != int64(len(data)) || img.Created.IsZero() {
		t.Fatalf("push printed %q (%v); want digest %s size %d", out, err, digest, len(data))
	}
	if !strings.HasPrefix(out, "{\n  \"digest\": \"sha256:") || !regexp.MustCompile(`^push \S+/app: 63\.5KiB in \S+\n$`).MatchString(errs) {
		t.Errorf("want pretty JSON and one final line on stderr (not a terminal): %q, %q", out, errs)
	}
	f, _, err := ih.h.OpenImage(digest)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(stored, data) {
		t.Error("the hub stored other bytes")
	}

	again, errs := ih.mustRun(t, "image", "push", file)
	if again != out || !strings.Contains(errs, "the hub had "+digest+" already") {
		t.Errorf("second push: %q, stderr %q; want the same answer and a note", again, errs)
	}
	other := writeFile(t, "app.tar.gz", []byte("\x1f\x8b not really gzip"))
	ih.mustRun(t, "image", "push", other)

	list, _ := ih.mustRun(t, "image", "list")
	var imgs []struct{ Digest string }
	if err := json.Unmarshal([]byte(list), &imgs); err != nil || len(imgs) != 2 || imgs[0].Digest != digest {
		t.Fatalf("list printed %s (%v)", list, err)
	}
	table, _ := ih.mustRun(t, "image", "list", "-o", "table")
	if !regexp.MustCompile(`^DIGEST +SIZE +CREATED\n` + digest + ` +65000 +\d{4}-\d\d-\d\dT[0-9:.]+Z\nsha256:[0-9a-f]{64} +18 +`).MatchString(table) {
		t.Errorf("table:\n%s", table)
	}

	if out, _ := ih.mustRun(t, "image", "delete", digest); out != "" {
		t.Errorf("delete printed %q", out)
	}
	if list, _ := ih.mustRun(t, "image", "list"); strings.Contains(list, digest) {
		t.Errorf("listed after delete: %s", list)
	}
	if code, _, errs := ih.run("image", "delete", digest); code != 1 || !strings.HasPrefix(errs, "error: hub: 404 NotFound: not found: image "+digest+" is not in the hub's image store") {
		t.Errorf("delete of an absent image: exit %d, %q", code, errs)
	}
}

// TestImageCLIErrors: bad files and digests are refused before anything
// reaches the hub; the hub's size limit comes back as its message.
func TestImageCLIErrors(t *testing.T) {
	ih := newImageHub(t, 1000)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"image", "push", filepath.Join(dir, "nope")}, 1, "error: image file " + filepath.Join(dir, "nope") + " does not exist\n"},
		{[]string{"image", "push", dir}, 1, "error: image file " + dir + " is a directory"},
		{[]string{"image", "push", fifo}, 1, "error: image file " + fifo + " is not a regular file"},
		{[]string{"image", "push", writeFile(t, "empty", nil)}, 1, "error: image file "},
		{[]string{"image", "push"}, 2, "error: image push takes 1 argument(s), got 0\n"},
		{[]string{"image"}, 2, "error: missing subcommand\n"},
		{[]string{"image", "pull", "x"}, 2, "error: unknown subcommand \"pull\"\n"},
		{[]string{"image", "delete", "sha256:ABC"}, 2, "error: digest \"sha256:ABC\": want sha256:<64 lowercase hex>"},
		{[]string{"image", "list", "-o", "yaml"}, 2, "error: -o \"yaml\": want json or table"},
	} {
		code, _, errs := ih.run(tt.args...)
		if code != tt.code || !strings.HasPrefix(errs, tt.stderr) {
			t.Errorf("outpost %s: exit %d, stderr %q\nwant exit %d, %q", strings.Join(tt.args, " "), code, errs, tt.code, tt.stderr)
		}
	}
	if _, _, errs := ih.run("image", "push", writeFile(t, "empty", nil)); !strings.Contains(errs, "is empty; a module image is an executable or an archive") {
		t.Errorf("empty file: %q", errs)
	}
	code, _, errs := ih.run("image", "push", writeFile(t, "big", append([]byte("#!/bin/sh\n"), bytes.Repeat([]byte("x"), 5000)...)))
	if code != 1 || !strings.Contains(errs, "hub: 413 RequestEntityTooLarge: ") || !strings.Contains(errs, "at most 1000 bytes") {
		t.Errorf("over the hub's limit: exit %d, %q", code, errs)
	}
	if imgs, err := ih.h.Images(); err != nil || len(imgs) != 0 {
		t.Errorf("the hub has %v (%v)", imgs, err)
	}
}
