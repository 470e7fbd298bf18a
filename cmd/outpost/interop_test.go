package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

	p := scriptParams()
	p.Dir = interopDir
	p.Cmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"envout":    cmdEnvOut,
		"httpwait":  cmdHTTPWait,
		"splitaddr": cmdSplitAddr,
	}
	for name, f := range scriptCmds {
		p.Cmds[name] = f
	}
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

// envout VAR: sets VAR to the previous command's stdout, surrounding space
// trimmed (e.g. a token printed by `exec outpost token`).
func cmdEnvOut(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: envout VAR")
	}
	v := strings.TrimSpace(ts.ReadFile("stdout"))
	if v == "" {
		ts.Fatalf("envout %s: the previous command printed nothing", args[0])
	}
	ts.Setenv(args[0], v)
}

// splitaddr ADDR HOSTVAR PORTVAR: splits host:port (mosquitto clients take
// -h and -p separately).
func cmdSplitAddr(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: splitaddr ADDR HOSTVAR PORTVAR")
	}
	host, port, err := net.SplitHostPort(args[0])
	ts.Check(err)
	ts.Setenv(args[1], host)
	ts.Setenv(args[2], port)
}

// httpwait TIMEOUT METHOD URL [BODY]: like http, but repeats the request while
// it answers 404 (e.g. a direct method before the client has subscribed), for
// at most TIMEOUT.
func cmdHTTPWait(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 3 || len(args) > 4 {
		ts.Fatalf("usage: httpwait TIMEOUT METHOD URL [BODY]")
	}
	d, err := time.ParseDuration(args[0])
	ts.Check(err)
	deadline := time.Now().Add(d)
	for {
		code, data := httpDo(ts, args[1], args[2], args[3:])
		if code == 404 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		httpReport(ts, neg, args[1], args[2], code, data)
		return
	}
}
