package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// interopDir holds the scenarios that run third-party clients (mosquitto
// clients, the Azure IoT Node SDK) against a real edge; .ci/interop installs
// them and runs this test with OUTPOST_INTEROP=1 (`make interop`).
const interopDir = "../../testdata/interop"

// TestInterop runs every scenario in testdata/interop. It needs tools that
// `make test` does not install, so it runs only with OUTPOST_INTEROP=1; then a
// missing tool is a failure, not a skip.
func TestInterop(t *testing.T) {
	if os.Getenv("OUTPOST_INTEROP") != "1" {
		t.Skip("interop scenarios need mosquitto-clients, node and testdata/interop/node/node_modules: run `make interop` (sets OUTPOST_INTEROP=1)")
	}
	nodeDir, err := filepath.Abs(filepath.Join(interopDir, "node"))
	if err != nil {
		t.Fatal(err)
	}
	modules := filepath.Join(nodeDir, "node_modules")
	var missing []string
	for _, tool := range []string{"mosquitto_pub", "mosquitto_sub", "node"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" (not in PATH)")
		}
	}
	for _, pkg := range []string{"azure-iot-device", "azure-iot-device-mqtt", "azure-iothub"} {
		if _, err := os.Stat(filepath.Join(modules, pkg, "package.json")); err != nil {
			missing = append(missing, "npm package "+pkg+" (not in "+modules+")")
		}
	}
	if len(missing) > 0 {
		t.Fatalf("OUTPOST_INTEROP=1 but missing: %s; .ci/interop installs them", strings.Join(missing, ", "))
	}

	modules = reachableByModules(t, modules)
	p := scriptParams() // its commands include envout, httpwait and splitaddr
	p.Dir = interopDir
	setup := p.Setup
	p.Setup = func(env *testscript.Env) error {
		if setup != nil {
			if err := setup(env); err != nil {
				return err
			}
		}
		env.Setenv("NODE_PATH", modules)
		env.Setenv("NODESCRIPTS", nodeDir)
		return nil
	}
	testscript.Run(t, p)
}

// reachableByModules returns dir, or, when the edge runs modules under their
// own uids (root) and dir sits below a directory others cannot search (a
// checkout in /root), a copy of it that those uids can read: the supervised
// Node module loads its SDK through NODE_PATH.
func reachableByModules(t *testing.T, dir string) string {
	if os.Geteuid() != 0 || othersCanSearch(dir) {
		return dir
	}
	tmp := t.TempDir()
	for _, p := range []string{filepath.Dir(tmp), tmp} {
		if err := os.Chmod(p, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	if !othersCanSearch(tmp) {
		t.Fatalf("%s: a directory above it is not searchable by others; modules under their own uids could not load the Node SDK", tmp)
	}
	if out, err := exec.Command("cp", "-a", dir, tmp).CombinedOutput(); err != nil {
		t.Fatalf("copy %s for the modules: %v: %s", dir, err, out)
	}
	return filepath.Join(tmp, filepath.Base(dir))
}

// othersCanSearch reports whether every directory from / down to dir has
// the search bit for others.
func othersCanSearch(dir string) bool {
	for p := dir; ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm()&0o001 == 0 {
			return false
		}
		if p == filepath.Dir(p) {
			return true
		}
	}
}
