package hub

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/certs"
)

// start runs a hub on listen and returns what its ready.json says and what
// it printed.
func start(t *testing.T, listen string) (Ready, string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "hub")
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{DataDir: dir, Listen: listen, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Stdout: &out})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hub: %v", err)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		data, err := os.ReadFile(filepath.Join(dir, "ready.json"))
		var r Ready
		if err == nil && json.Unmarshal(data, &r) == nil {
			return r, out.String(), dir
		}
		select {
		case err := <-done:
			t.Fatalf("hub stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatal("hub not ready in 20s")
	return Ready{}, "", ""
}

// On an address other hosts reach, the hub serves TLS with a CA it made
// and printed; plain HTTP gets nothing.
func TestServesTLSOffLoopback(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	r, out, dir := start(t, ":0")
	if !strings.HasPrefix(r.URL, "https://") || r.CA == "" {
		t.Fatalf("ready %+v: want https and a CA", r)
	}
	if want := "hub CA " + r.CA + " (edges and the CLI trust it with --hub-ca)\n"; !strings.Contains(out, want) {
		t.Errorf("stdout %q lacks %q", out, want)
	}
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(r.URL, "https://"))
	pool, err := certs.LoadCAs(r.CA, "ca")
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if want := "https://localhost:" + port; r.URL != want {
		t.Errorf("ready URL %s, want %s (what clients can use)", r.URL, want)
	}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		resp, err := client.Get("https://" + net.JoinHostPort(host, port) + "/healthz")
		if err != nil {
			t.Fatalf("https to %s with the printed CA: %v", host, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("https /healthz: %s", resp.Status)
		}
	}
	if resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://127.0.0.1:" + port + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("plain HTTP answered 200 on a non-loopback listener")
		}
	}
	modes := map[string]os.FileMode{"": 0o700, ownerFile: 0o600, "certs": 0o700,
		"certs/" + certs.CAFile: 0o644, "certs/" + certs.CAKeyFile: 0o600, "certs/" + certs.ServerKeyFile: 0o600}
	for name, want := range modes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %04o, want %04o", filepath.Join(dir, name), got, want)
		}
	}
}

// On loopback the hub keeps plain HTTP (development, the first hour).
func TestPlainOnLoopback(t *testing.T) {
	r, out, dir := start(t, "127.0.0.1:0")
	if !strings.HasPrefix(r.URL, "http://127.0.0.1:") || r.CA != "" || strings.Contains(out, "hub CA") {
		t.Fatalf("ready %+v, stdout %q: want plain http and no CA", r, out)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(r.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("http /healthz: %s", resp.Status)
	}
	if _, err := os.Stat(filepath.Join(dir, "certs")); !os.IsNotExist(err) {
		t.Errorf("a loopback hub made certificates: %v", err)
	}
}

// A single hub says so to `outpost hub members` and `leave`.
func TestSingleHubHasNoMembers(t *testing.T) {
	r, _, _ := start(t, "127.0.0.1:0")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(r.URL + "/cluster/members")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || !strings.Contains(string(body), "--node-id and --raft") {
		t.Fatalf("GET /cluster/members at a single hub: %s %s", resp.Status, body)
	}
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:80": true, "127.3.4.5:1": true, "[::1]:8080": true, "localhost:8080": true,
		":8443": false, "0.0.0.0:8443": false, "[::]:1": false, "10.0.0.1:80": false, "hub.example:443": false,
		"localhost.example:1": false, "127.0.0.1": false,
	} {
		if got := Loopback(addr); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}
func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.buf.String() }

// A cluster flag alone is refused, --raft-advertise among them: the hub
// does not silently run as a single node.
func TestClusterFlagAloneRefused(t *testing.T) {
	for _, cfg := range []Config{{NodeID: "n1"}, {Join: "http://127.0.0.1:1"}, {RaftAdvertise: "127.0.0.1:7000"}} {
		cfg.DataDir, cfg.Listen = t.TempDir(), "127.0.0.1:0"
		cfg.Logger, cfg.Stdout = slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // a hub that starts serves until then
		err := Run(ctx, cfg)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "--node-id and --raft") {
			t.Errorf("%+v: got %v, want the error naming --node-id and --raft", cfg, err)
		}
	}
}
