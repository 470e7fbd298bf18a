package demo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenDirRoot: run as root, the demo's edge runs its modules under
// their own uids; a --dir below a directory they cannot search is refused
// before anything starts, with what to do. A searchable one is made
// searchable (not listable) for them.
func TestOpenDirRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("modules run under their own uids only when the edge is root")
	}
	closed := t.TempDir()
	if err := os.Chmod(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	err := openDir(filepath.Join(closed, "outpost-demo"))
	if err == nil || !strings.Contains(err.Error(), closed+" is -rwx------ (others may not search it)") || !strings.Contains(err.Error(), "chmod o+x "+closed) {
		t.Errorf("below a closed directory: %v", err)
	}
	open := t.TempDir()
	for _, d := range []string{open, filepath.Dir(open)} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(open, "outpost-demo")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := openDir(dir); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o711 {
		t.Errorf("%s: %v (%v), want 0711", dir, st.Mode().Perm(), err)
	}
}
