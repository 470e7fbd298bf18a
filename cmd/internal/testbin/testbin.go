// Package testbin builds the outpost binary once per test process, for the
// tests and benchmarks that run it as real processes (a kill -9 is then
// the kill of a process).
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	once sync.Once
	dir  string
	path string
	err  error
)

// Outpost returns the path of cmd/outpost, built on the first call.
func Outpost(tb testing.TB) string {
	tb.Helper()
	once.Do(func() {
		if dir, err = os.MkdirTemp("", "outpost-bin-"); err != nil {
			return
		}
		path = filepath.Join(dir, "outpost")
		out, buildErr := exec.Command("go", "build", "-o", path, "github.com/outpost-edge/outpost/cmd/outpost").CombinedOutput()
		if buildErr != nil {
			err = fmt.Errorf("go build cmd/outpost: %v\n%s", buildErr, out)
		}
	})
	if err != nil {
		tb.Fatal(err)
	}
	return path
}

// Cleanup removes the build; TestMain calls it after m.Run.
func Cleanup() {
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
}
