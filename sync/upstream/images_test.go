package upstream

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/sync/hub"
)

// withImageHub swaps a hub whose image store is in a test directory in
// for the env's hub (the same edge, with the same key) and returns it with
// that directory.
func withImageHub(t *testing.T, e *env) (*hub.Hub, string) {
	t.Helper()
	dir := t.TempDir()
	h, err := hub.Open(e.ctx, "", hub.Options{HostName: "hub.test", OwnerKey: []byte("owner-key"), InMemory: true, ImageDir: dir, PullWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// The env's server may still be serving a request of the link when the
	// test ends: close it (waiting for those requests) before the hub.
	t.Cleanup(func() { e.srv.CloseClientConnections(); e.srv.Close(); _ = h.Close() })
	if _, err := h.PutDevice(e.ctx, identity.JSON{DeviceID: "gw1", Capabilities: &identity.Capabilities{IoTEdge: true},
		Authentication: &identity.Authentication{Type: identity.AuthSAS, SymmetricKey: &identity.SymmetricKey{PrimaryKey: e.edgeCS.SharedAccessKey}}}); err != nil {
		t.Fatal(err)
	}
	e.serve(h.Handler())
	t.Cleanup(func() { h.Stop() })
	return h, dir
}

func imageDigest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// TestFetchImage: an image pushed to the hub arrives byte for byte; an
// unknown one is the hub's 404; a malformed digest never leaves the edge.
func TestFetchImage(t *testing.T) {
	e := newEnv(t)
	h, _ := withImageHub(t, e)
	data := make([]byte, 3<<20+17)
	_, _ = rand.Read(data)
	img, _, err := h.PushImage(e.ctx, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := e.link.FetchImage(e.ctx, img.Digest, &buf)
	if err != nil || n != int64(len(data)) || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("FetchImage = %d, %v; got %d bytes, want %d", n, err, buf.Len(), len(data))
	}

	buf.Reset()
	_, err = e.link.FetchImage(e.ctx, imageDigest([]byte("never pushed")), &buf)
	var he *HubError
	if !errors.As(err, &he) || he.Status != 404 || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "not in the hub's image store") || buf.Len() != 0 {
		t.Errorf("unknown image: %v (wrote %d bytes)", err, buf.Len())
	}
	if _, err := e.link.FetchImage(e.ctx, "sha256:ABC", &buf); err == nil || !strings.Contains(err.Error(), "sha256:<64 lowercase hex>") {
		t.Errorf("malformed digest: %v", err)
	}
}

// TestFetchImageDigestMismatch: a blob that rotted on the hub's disk is
// caught by the edge.
func TestFetchImageDigestMismatch(t *testing.T) {
	e := newEnv(t)
	h, dir := withImageHub(t, e)
	data := []byte("#!/bin/sh\nexec sleep 1000\n")
	img, _, err := h.PushImage(e.ctx, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Replace(data, []byte("1000"), []byte("9999"), 1)
	if err := os.WriteFile(filepath.Join(dir, "sha256-"+img.Digest[len("sha256:"):]), bad, 0o600); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, err = e.link.FetchImage(e.ctx, img.Digest, &buf)
	want := "digest mismatch: got " + imageDigest(bad) + ", want " + img.Digest
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("FetchImage of a corrupted blob: %v, want %q", err, want)
	}
}

// TestFetchImageStall: a hub that stops sending is given up on after the
// stall timeout, not after an overall deadline.
func TestFetchImageStall(t *testing.T) {
	e := newEnv(t)
	old := imageStall
	imageStall = 300 * time.Millisecond
	t.Cleanup(func() { imageStall = old })
	digest := imageDigest([]byte("slow"))
	slow := http.NewServeMux()
	slow.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, digest) {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Length", "1000")
		// Slow but moving: every 100 ms a byte, for longer than the stall
		// timeout; then nothing.
		for range 6 {
			_, _ = w.Write([]byte("x"))
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
		<-r.Context().Done()
	})
	e.serve(slow)
	start := time.Now()
	var buf bytes.Buffer
	n, err := e.link.FetchImage(context.Background(), digest, &buf)
	if err == nil || !strings.Contains(err.Error(), "no data from the hub for 300ms") || n != 6 {
		t.Errorf("FetchImage = %d, %v", n, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %s", d)
	}
}

// TestFetchImageOversize: an answer larger than the hub advertised, or than
// the edge's maximum, is refused while it downloads: reading stops at the
// limit (an attacker on the link cannot fill the gateway's disk before the
// digest check), and the refusal is counted.
func TestFetchImageOversize(t *testing.T) {
	const max = 64 << 10
	e := newEnvWith(t, func(e *env) { e.link.opts.MaxImageSize = max })
	digest := imageDigest([]byte("small"))
	junk := bytes.Repeat([]byte("x"), 4*max)
	var bomb bytes.Buffer // a small gzip body that inflates to 4×max
	zw := gzip.NewWriter(&bomb)
	_, _ = zw.Write(junk)
	_ = zw.Close()
	cases := []struct {
		name  string
		serve func(w http.ResponseWriter)
		max   int64 // bytes the edge may take in
		want  error // nil: any error (the digest check)
	}{
		{"announces more than the maximum", func(w http.ResponseWriter) {
			w.Header().Set("Content-Length", strconv.Itoa(max+1))
			_, _ = w.Write(junk[:max+1])
		}, 0, ErrImageTooLarge},
		{"announces nothing, sends 4×max", func(w http.ResponseWriter) {
			for i := 0; i < len(junk); i += 1024 {
				_, _ = w.Write(junk[i : i+1024])
				w.(http.Flusher).Flush() // chunked: no Content-Length
			}
		}, max, ErrImageTooLarge},
		{"announces 100 bytes, sends 4×max (raw)", func(w http.ResponseWriter) {
			conn, buf, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
			_, _ = buf.Write(junk)
			_ = buf.Flush()
		}, 100, nil},
		{"announces a gzip body that inflates to 4×max", func(w http.ResponseWriter) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("Content-Length", strconv.Itoa(bomb.Len()))
			_, _ = w.Write(bomb.Bytes())
		}, int64(bomb.Len()), nil},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mux := http.NewServeMux() // the env's handler is a *http.ServeMux
			mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
				if !strings.HasSuffix(r.URL.Path, digest) {
					http.Error(w, "busy", http.StatusServiceUnavailable)
					return
				}
				c.serve(w)
			})
			e.serve(mux)
			var buf bytes.Buffer
			n, err := e.link.FetchImage(e.ctx, digest, &buf)
			if err == nil || c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("FetchImage = %d, %v; want %v", n, err, c.want)
			}
			if n > c.max || int64(buf.Len()) > c.max {
				t.Errorf("took in %d bytes (wrote %d), want at most %d", n, buf.Len(), c.max)
			}
			if c.want != nil && !strings.Contains(err.Error(), "--max-image-size") && !strings.Contains(err.Error(), "Content-Length") {
				t.Errorf("the error does not say which limit: %v", err)
			}
			if got := e.link.Status().ImagesRefused; c.want != nil && got != int64(i+1) {
				t.Errorf("imagesRefused = %d, want %d", got, i+1)
			}
		})
	}
}

// TestFetchImageProgressLog: a long download logs how far it has got at
// most once per imageProgressEvery, however many reads it takes; a short
// one logs nothing.
func TestFetchImageProgressLog(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	now := time.Unix(0, 0)
	clock := func() time.Time { return now }
	const total = 1 << 20
	f := newFetchLog(io.LimitReader(zeroReader{}, total), log, "sha256:ab", total, clock)
	buf := make([]byte, 1024)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			now = now.Add(100 * time.Millisecond) // 1 KiB per 100 ms: 102.4 s in all
		}
		if err != nil {
			break
		}
	}
	lines := strings.Count(logs.String(), `msg="image download"`)
	if want := int(102400 * time.Millisecond / imageProgressEvery); lines < want-1 || lines > want+1 {
		t.Errorf("%d progress lines over 102 s of download, want about %d:\n%s", lines, want, logs.String())
	}
	if !strings.Contains(logs.String(), `msg="image download" digest=sha256:ab bytes=103424 total=1048576 percent=9`) {
		t.Errorf("first line:\n%s", logs.String())
	}
	logs.Reset()
	f = newFetchLog(strings.NewReader("short"), log, "sha256:ab", 5, clock)
	_, _ = io.ReadAll(f)
	if logs.Len() != 0 {
		t.Errorf("a short download logged %s", logs.String())
	}
}

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) { clear(b); return len(b), nil }
