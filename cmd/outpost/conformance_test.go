package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/edge"
)

// TestConformance checks the MQTT behaviours that the Eclipse Paho
// interoperability suite (eclipse/paho.mqtt.testing, interoperability/
// client_test.py and client_test5.py) checks, with our own Go clients
// (paho.mqtt.golang for 3.1.1, paho.golang for 5), against Debian's mosquitto
// broker and an `outpost edge` side by side:
// TestConformance/<behaviour>/{mosquitto,outpost}. The suite itself runs
// locally through .ci/paho-interop (docs/operations.md, "MQTT conformance").
//
// The rule: a behaviour mosquitto passes and Outpost fails fails the test,
// unless outpostKnownFailures lists it (then it is logged, and the test fails
// when it starts passing, so the list stays true); a behaviour both fail is
// logged; outpostFlaky lists behaviours whose result is only logged, for
// now. Nothing is skipped. Runs with OUTPOST_INTEROP=1 (`make interop`,
// which installs mosquitto).
func TestConformance(t *testing.T) {
	if os.Getenv("OUTPOST_INTEROP") != "1" {
		t.Skip("conformance needs the mosquitto broker: run `make interop` (sets OUTPOST_INTEROP=1)")
	}
	mosquitto, outpost := startMosquitto(t), startConformanceEdge(t)
	for _, c := range conformanceChecks {
		t.Run(c.name, func(t *testing.T) {
			var errs [2]error
			var wg sync.WaitGroup
			for i, b := range []confBroker{mosquitto, outpost} {
				wg.Add(1)
				go func() { defer wg.Done(); errs[i] = c.check(b.with(c.name)) }()
			}
			wg.Wait()
			t.Run("mosquitto", func(t *testing.T) {
				if errs[0] != nil {
					t.Logf("mosquitto does not pass it either: %v", errs[0])
				}
			})
			t.Run("outpost", func(t *testing.T) { judgeOutpost(t, c.name, errs[0], errs[1]) })
		})
	}
}

// outpostKnownFailures: behaviours mosquitto passes and Outpost does not
// pass yet, each with why (measured on main 58e9864, 2026-12-05). A listed
// behaviour that passes fails TestConformance: take it off the list when
// the work lands.
var outpostKnownFailures = map[string]string{}

// outpostFlaky: behaviours Outpost fails some of the time (mosquitto
// always passes them). Their result is logged, pass or fail; fix them and
// take them off.
var outpostFlaky = map[string]string{
	// A client that set Maximum Packet Size 64 publishes a 48-byte QoS 0
	// message then a too-large QoS 1 one to its own subscription: in about
	// half the runs the edge sends no PUBLISH for the QoS 0 message at all
	// (seen on the wire: SUBACK, then only the PUBACK). A raw-socket client
	// sending the same packets did not reproduce it in 75 tries.
	"maximum_packet_size": "a QoS 0 message before a too-large one is sometimes not delivered",
	// A DISCONNECT that sets session expiry 0 should end the session at
	// once; mochi ends sessions on a 1s tick (disconnected + expiry < now),
	// so an immediate reconnect sometimes finds it (session present).
	"session_expiry_zero_on_disconnect": "a session ended by DISCONNECT expiry 0 may outlive it by up to 2s",
	// The same 1 s tick: a session with expiry 0 that ended with its
	// connection was found by an immediate reconnect under CI load once
	// (2026-12-05, `.ci/run`; passes alone).
	"session_expiry": "a session with expiry 0 may outlive its connection by up to 2s",
}

// judgeOutpost applies the rule of TestConformance to Outpost's result.
func judgeOutpost(t *testing.T, name string, mosqErr, err error) {
	known, listed := outpostKnownFailures[name]
	if why, flaky := outpostFlaky[name]; flaky {
		if err == nil {
			t.Logf("flaky on Outpost (%s); passed this time", why)
		} else {
			t.Logf("flaky on Outpost (%s); failed this time: %v", why, err)
		}
		return
	}
	switch {
	case err == nil && listed:
		t.Errorf("%s passes on Outpost now: take it off outpostKnownFailures (%s)", name, known)
	case err == nil:
	case mosqErr != nil:
		t.Logf("fails on both brokers; Outpost: %v", err)
	case listed:
		t.Logf("known failure (%s): %v", known, err)
	default:
		t.Errorf("mosquitto passes %s, Outpost does not: %v", name, err)
	}
}

// confBroker is one broker under test; ns is a topic and client id prefix
// unique to one check, so checks do not see each other's messages,
// retained messages or sessions.
type confBroker struct {
	name, addr, ns string
}

var confRun atomic.Int64

func (b confBroker) with(check string) confBroker {
	b.ns = fmt.Sprintf("conf%d-%d-%s", os.Getpid(), confRun.Add(1), check)
	return b
}

// topic is a topic name in the check's namespace.
func (b confBroker) topic(rest string) string { return b.ns + "/" + rest }

// id is a client id in the check's namespace.
func (b confBroker) id(rest string) string { return b.ns + "-" + rest }

type conformanceCheck struct {
	name  string
	check func(b confBroker) error
}

// conformanceChecks: 3.1.1 (conformance_v3_test.go) then 5
// (conformance_v5_test.go).
var conformanceChecks = append(append([]conformanceCheck{}, v3Checks...), v5Checks...)

// mosquittoACL: what the edge's deployment allows, for mosquitto; anonymous
// clients may use every topic but may not subscribe to test/nosubscribe.
const mosquittoACL = "topic deny test/nosubscribe\ntopic readwrite #\n"

// startMosquitto runs Debian's mosquitto on a free loopback port.
func startMosquitto(t *testing.T) confBroker {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/mosquitto"); err != nil {
			t.Fatal("OUTPOST_INTEROP=1 but the mosquitto broker is not installed; .ci/interop installs it (apt-get install mosquitto)")
		}
	}
	dir := t.TempDir()
	// Started as root, mosquitto reads its ACL file as user mosquitto.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	acl := filepath.Join(dir, "acl")
	conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nacl_file %s\n", port, acl)
	for name, text := range map[string]string{acl: mosquittoACL, filepath.Join(dir, "mosquitto.conf"): conf} {
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	startProcess(t, "mosquitto", filepath.Join(dir, "log"), bin, "-c", filepath.Join(dir, "mosquitto.conf"))
	waitListening(t, "mosquitto", addr, filepath.Join(dir, "log"))
	return confBroker{name: "mosquitto", addr: addr}
}

// conformanceDeployment: a standalone edge that admits anonymous clients
// from loopback, with the policy the Paho suite expects: every free topic
// allowed, subscribing to test/nosubscribe denied.
const conformanceDeployment = `{"modulesContent":{
  "$edgeAgent":{"properties.desired":{"modules":{}}},
  "$edgeHub":{"properties.desired":{"schemaVersion":"1.1","routes":{},
    "storeAndForwardConfiguration":{"timeToLiveSecs":7200},
    "mqttBroker":{"anonymous":"loopback","authorizations":[
      {"identities":["{{iot:identity}}"],
       "allow":[{"operations":["mqtt:publish","mqtt:subscribe"],"resources":["#"]}],
       "deny":[{"operations":["mqtt:subscribe"],"resources":["test/nosubscribe"]}]}]}}}}}`

// startConformanceEdge runs `outpost edge` standalone (this test binary,
// as testscript installed it) with conformanceDeployment.
func startConformanceEdge(t *testing.T) confBroker {
	bin, err := exec.LookPath("outpost")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	deployment := filepath.Join(dir, "deployment.json")
	if err := os.WriteFile(deployment, []byte(conformanceDeployment), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "edge")
	startProcess(t, "outpost", filepath.Join(dir, "log"), bin, "edge", "--data", data, "--hub-url", "off",
		"--connection-string", "HostName=hub.local;DeviceId=conformance;SharedAccessKey=dGVzdC1rZXktZm9yLW91dHBvc3Qtc2NlbmFyaW9zLSE=",
		"--mqtt", "127.0.0.1:0", "--api", "127.0.0.1:0", "--deployment", deployment)
	var r edge.Ready
	deadline := time.Now().Add(60 * time.Second)
	for r.MQTT == "" {
		if b, err := os.ReadFile(filepath.Join(data, "ready.json")); err == nil {
			_ = json.Unmarshal(b, &r)
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Fatalf("outpost edge not ready after 60s; its log:\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return confBroker{name: "outpost", addr: r.MQTT}
}

// startProcess starts bin with its output in logPath; the test's cleanup
// stops it (SIGTERM, then SIGKILL after 10s).
func startProcess(t *testing.T, name, logPath, bin string, args ...string) {
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = logf.Close()
	})
}

// waitListening waits (30s) until addr accepts TCP connections.
func waitListening(t *testing.T, name, addr, logPath string) {
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("%s is not listening on %s after 30s: %v; its log:\n%s", name, addr, err, log)
		}
	}
}
