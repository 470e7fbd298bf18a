package supervisor

import (
	"os"
	"path/filepath"
	"testing"
)

// An image unpacked by a version that kept it to the edge's user is
// published in place: every entry gets its mode, the top directory too.
func TestPublishUnpackedImage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sha256-x.d")
	files := map[string]os.FileMode{"bin/mod": 0o700, "bin/conf": 0o600, "README": 0o644}
	for name, mode := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := publish(dir); err != nil {
		t.Fatal(err)
	}
	want := map[string]os.FileMode{".": 0o755, "bin": 0o755, "bin/mod": 0o755, "bin/conf": 0o644, "README": 0o644}
	for name, mode := range want {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", name, st.Mode().Perm(), mode)
		}
	}
}
