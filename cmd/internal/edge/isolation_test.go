package edge

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/supervisor"
)

// Modules get their own uids only from an edge that is root, and the
// status says when they do not.
func TestModuleIsolationNeedsRoot(t *testing.T) {
	custom := supervisor.UIDRange{First: 70000, Last: 70010}
	for _, c := range []struct {
		euid      int
		r, want   supervisor.UIDRange
		isolation string
	}{
		{0, supervisor.UIDRange{}, supervisor.DefaultModuleUIDs, "uid"},
		{0, custom, custom, "uid"},
		{1000, custom, supervisor.UIDRange{}, "none: the edge is not root; modules run as its user"},
		{1000, supervisor.UIDRange{}, supervisor.UIDRange{}, "none: the edge is not root; modules run as its user"},
	} {
		if got := moduleUIDs(c.euid, c.r); got != c.want {
			t.Errorf("euid %d, range %v: modules get %v, want %v", c.euid, c.r, got, c.want)
		}
		if got := moduleIsolation(c.euid); !strings.HasPrefix(got, c.isolation) {
			t.Errorf("euid %d: moduleIsolation %q, want %q…", c.euid, got, c.isolation)
		}
	}
}

// With modules under their own uids, the data directory lets them reach
// modules/ and the CA certificate and nothing else; without, it is the
// edge's alone.
func TestProtectDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	files := map[string]os.FileMode{
		"store/000001.vlog": 0o644, "api-token": 0o644, "ready.json": 0o644, "owner": 0o640,
		"certs/ca.pem": 0o600, "certs/server.pem": 0o644, "certs/ca-key.pem": 0o644, "certs/server-key.pem": 0o640,
		"modules/applied.json": 0o600,
	}
	for name, mode := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
	}
	if err := protectDataDir(dir, true); err != nil {
		t.Fatal(err)
	}
	want := map[string]os.FileMode{
		".": 0o711, "store": 0o700, "api-token": 0o600, "owner": 0o600, "ready.json": 0o644,
		"certs": 0o711, "certs/ca.pem": 0o644, "certs/server.pem": 0o644, "certs/ca-key.pem": 0o600, "certs/server-key.pem": 0o600,
		"modules": 0o755, // the supervisor's to arrange
	}
	for name, mode := range want {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", name, st.Mode().Perm(), mode)
		}
	}
	os.Chmod(dir, 0o755)
	if err := protectDataDir(dir, false); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("not isolated: data directory %v, want 0700", st.Mode().Perm())
	}
}
