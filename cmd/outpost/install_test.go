package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestMakeInstall runs the Makefile's install and uninstall targets on a
// copy of it, with stand-ins for the built binaries (-o bin/outpost: not
// rebuilt): DESTDIR and PREFIX are honoured, the samples are installed only
// when built, and uninstall removes what install put.
func TestMakeInstall(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	src, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, data string, mode os.FileMode) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("Makefile", string(src), 0o644)
	write("bin/outpost", "#!/bin/sh\n", 0o700)
	write("bin/outpost-filter", "#!/bin/sh\n", 0o700) // the sensor is not built
	mk := func(args ...string) {
		t.Helper()
		cmd := exec.Command("make", append([]string{"-o", "bin/outpost", "DESTDIR=" + filepath.Join(dir, "dest"), "PREFIX=/opt/outpost"}, args...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make %v: %v\n%s", args, err, out)
		}
	}
	mk("install")
	bindir := filepath.Join(dir, "dest/opt/outpost/bin")
	for _, name := range []string{"outpost", "outpost-filter"} {
		st, err := os.Stat(filepath.Join(bindir, name))
		if err != nil {
			t.Fatalf("make install: %v", err)
		}
		if st.Mode().Perm() != 0o755 {
			t.Errorf("%s: mode %v, want 0755", name, st.Mode().Perm())
		}
	}
	if _, err := os.Stat(filepath.Join(bindir, "outpost-tempsensor")); !os.IsNotExist(err) {
		t.Errorf("a sample that was not built was installed: %v", err)
	}
	mk("uninstall")
	if left, _ := os.ReadDir(bindir); len(left) != 0 {
		t.Errorf("make uninstall left %v", left)
	}
}
