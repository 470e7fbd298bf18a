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
	for _, pkg := range []string{"azure-iot-device", "azure-iot-device-mqtt"} {
		if _, err := os.Stat(filepath.Join(modules, pkg, "package.json")); err != nil {
			missing = append(missing, "npm package "+pkg+" (not in "+modules+")")
		}
	}
	if len(missing) > 0 {
		t.Fatalf("OUTPOST_INTEROP=1 but missing: %s; .ci/interop installs them", strings.Join(missing, ", "))
	}

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
