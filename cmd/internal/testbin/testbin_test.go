package testbin

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Outpost builds a binary that runs, once: the second call returns the
// same file without building again.
func TestOutpost(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/outpost")
	}
	t.Cleanup(Cleanup)
	p := Outpost(t)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(p, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "outpost ") {
		t.Fatalf("%s version: %v %s", p, err, out)
	}
	if q := Outpost(t); q != p {
		t.Fatalf("second call: %s, want %s", q, p)
	}
	if fi2, err := os.Stat(p); err != nil || !fi2.ModTime().Equal(fi.ModTime()) {
		t.Fatalf("the binary was built again (%v)", err)
	}
}
