package hub

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runOnce starts a hub on dir with hostname (the listen address when
// empty), waits until it serves, stops it and returns its log.
func runOnce(t *testing.T, dir, hostname string) (Ready, string) {
	t.Helper()
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{DataDir: dir, Listen: "127.0.0.1:0", Hostname: hostname,
			Logger: slog.New(slog.NewTextHandler(&logs, nil)), Stdout: io.Discard})
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var r Ready
		if data, err := os.ReadFile(filepath.Join(dir, "ready.json")); err == nil && json.Unmarshal(data, &r) == nil {
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("hub: %v", err)
			}
			return r, logs.String()
		}
		select {
		case err := <-done:
			t.Fatalf("hub stopped: %v: %s", err, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatal("hub not ready in 20s")
		}
	}
}

// A hub whose HostName changed since its last start (a new --listen port
// without --hostname) warns: the tokens of every device and edge name the
// old one and are refused from now on.
func TestWarnsWhenHostNameChanges(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hub")
	if _, logs := runOnce(t, dir, "hub.example:8080"); strings.Contains(logs, "level=WARN") {
		t.Errorf("first start warned: %s", logs)
	}
	if _, logs := runOnce(t, dir, "hub.example:8080"); strings.Contains(logs, "level=WARN") {
		t.Errorf("a start with the same HostName warned: %s", logs)
	}
	r, logs := runOnce(t, dir, "")
	for _, want := range []string{"level=WARN", "HostName is not the one of its last start", "--hostname hub.example:8080",
		"hostname=" + r.HostName, "previous_hostname=hub.example:8080"} {
		if !strings.Contains(logs, want) {
			t.Errorf("start on a new port: log lacks %q: %s", want, logs)
		}
	}
	if _, logs := runOnce(t, dir, r.HostName); strings.Contains(logs, "level=WARN") {
		t.Errorf("the new HostName was not recorded: the next start warned again: %s", logs)
	}
}

// A data directory from before the record: the owner connection string
// tells the HostName of the last start.
func TestWarnsWhenHostNameChangesFromOwnerFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hub")
	runOnce(t, dir, "hub.example:8080")
	if err := os.Remove(filepath.Join(dir, hostNameFile)); err != nil {
		t.Fatal(err)
	}
	if _, logs := runOnce(t, dir, "hub.example:9090"); !strings.Contains(logs, "previous_hostname=hub.example:8080") {
		t.Errorf("no warning from the owner connection string's HostName: %s", logs)
	}
}
