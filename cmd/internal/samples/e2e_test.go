package samples_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/broker"
	"github.com/outpost-edge/outpost/broker/brokertest"
	"github.com/outpost-edge/outpost/broker/client"
	"github.com/outpost-edge/outpost/cmd/internal/samples"
)

// TestMain lets the subprocess tests run the samples' mains from this
// test binary.
func TestMain(m *testing.M) {
	switch os.Getenv("SAMPLES_TEST_MAIN") {
	case "tempsensor":
		samples.TempSensorMain()
	case "filter":
		samples.FilterMain()
	}
	os.Exit(m.Run())
}

const e2eRoutes = `{"routes":{
	"sensorToFilter":"FROM /messages/modules/sensor/outputs/temperatureOutput INTO BrokeredEndpoint(\"/modules/filter/inputs/input1\")",
	"junkToFilter":"FROM /messages/modules/junk/* INTO BrokeredEndpoint(\"/modules/filter/inputs/input1\")",
	"filterToUpstream":"FROM /messages/modules/filter/outputs/output1 INTO $upstream"}}`

// The sensor and the filter run as goroutines against a real broker with
// the route sensor → filter → $upstream: only readings above the threshold
// reach $upstream, marked as alerts; changing TemperatureThreshold in the
// filter's twin changes what passes; non-readings are counted, not fatal;
// the counters reach the reported properties; both stop cleanly.
func TestSensorFilterEndToEnd(t *testing.T) {
	h := newHarness(t, e2eRoutes, nil)
	sensorID, filterID := edgeID+"/sensor", edgeID+"/filter"
	// 20, 21, …, 30: eleven readings, then idle.
	h.PatchDesired(sensorID, `{"SendInterval":0.02,"MachineTempMin":20,"MachineTempMax":30,"MachineTempStep":1,"MaxMessages":11}`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 2)
	filterC, sensorC := h.Client(filterID), h.Client(sensorID)
	logger := brokertest.Logger(t)
	go func() {
		errs <- samples.RunFilter(ctx, filterC, samples.FilterOptions{Logger: logger, ReportInterval: 50 * time.Millisecond})
	}()
	go func() { errs <- samples.RunTempSensor(ctx, sensorC, samples.SensorOptions{Logger: logger}) }()

	counts := func(fwd, dropped, invalid float64) func() bool {
		return func() bool {
			r := h.Reported(filterID)
			return r["forwarded"] == fwd && r["dropped"] == dropped && r["invalid"] == invalid
		}
	}
	eventually(t, "the filter to report 5 forwarded, 6 dropped", counts(5, 6, 0))
	if r := h.Reported(filterID); r["TemperatureThreshold"] != 25.0 || r["lastError"] != nil {
		t.Errorf("filter reported %v", r)
	}
	if r := h.Reported(sensorID); r["SendInterval"] != 0.02 || r["MaxMessages"] != 11.0 || r["MachineTempMax"] != 30.0 || r["lastError"] != nil {
		t.Errorf("sensor reported %v", r)
	}
	checkUpstream(t, h, []float64{26, 27, 28, 29, 30})

	// Something that is not a reading: counted, acknowledged, no crash.
	junk := h.Client(edgeID + "/junk")
	check(t, junk.Connect(ctx))
	check(t, junk.SendOutput(ctx, "x", client.Message{Body: []byte("not json")}))
	eventually(t, "the filter to count the invalid input", counts(5, 6, 1))

	// A bad threshold is refused and reported; the previous one stays.
	h.PatchDesired(filterID, `{"TemperatureThreshold":"hot"}`)
	eventually(t, "the filter to report lastError", func() bool {
		e, _ := h.Reported(filterID)["lastError"].(string)
		return strings.Contains(e, "TemperatureThreshold")
	})
	// A new threshold, then eleven more readings (20 … 30 again).
	h.PatchDesired(filterID, `{"TemperatureThreshold":28}`)
	eventually(t, "the filter to apply 28", func() bool {
		r := h.Reported(filterID)
		return r["TemperatureThreshold"] == 28.0 && r["lastError"] == nil
	})
	h.PatchDesired(sensorID, `{"MaxMessages":22}`)
	eventually(t, "the filter to report 7 forwarded, 15 dropped", counts(7, 15, 1))
	checkUpstream(t, h, []float64{26, 27, 28, 29, 30, 29, 30})
	if q := h.Broker.Stats(); q.Refused.Load() != 0 {
		t.Errorf("broker refused %d messages", q.Refused.Load())
	}

	cancel()
	for range 2 {
		select {
		case err := <-errs:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a sample did not stop")
		}
	}
}

// checkUpstream wants exactly these machine temperatures in $upstream, as
// alerts from the filter carrying the sensor's message ids.
func checkUpstream(t *testing.T, h *brokertest.Harness, temps []float64) {
	t.Helper()
	msgs := h.Messages("$upstream")
	var got []float64
	ids := map[string]bool{}
	for _, m := range msgs {
		var r samples.Reading
		if err := json.Unmarshal(m.Body, &r); err != nil {
			t.Fatalf("upstream body %q: %v", m.Body, err)
		}
		got = append(got, r.Machine.Temperature)
		if m.Props["MessageType"] != "Alert" || m.Props["sequenceNumber"] == "" || m.Sys["connectionModuleId"] != "filter" ||
			m.Sys["contentType"] != "application/json" || m.ID == "" || ids[m.ID] {
			t.Errorf("upstream message %+v", m)
		}
		ids[m.ID] = true
	}
	if fmt.Sprint(got) != fmt.Sprint(temps) {
		t.Fatalf("upstream temperatures %v, want %v", got, temps)
	}
}

// outpost-tempsensor as a process: it connects from the supervisor's
// environment over TLS (trusting the edge CA file), sends readings, and
// exits 0 on SIGTERM; without the environment it exits 1 with one error
// line.
func TestMainsAsProcesses(t *testing.T) {
	caPEM, cert := brokertest.EdgeCA(t)
	h := newHarness(t, `{"routes":{"up":"FROM /messages/* INTO $upstream"}}`, func(o *broker.Options) {
		o.TLS = "127.0.0.1:0"
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	check(t, os.WriteFile(caFile, caPEM, 0o600))
	h.PatchDesired(edgeID+"/sensor", `{"SendInterval":0.05}`)

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SAMPLES_TEST_MAIN=tempsensor",
		client.EnvConnectionString+"="+h.ConnString(edgeID+"/sensor", h.Addr("tls")),
		client.EnvCACertificate+"="+caFile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	check(t, cmd.Start())
	defer cmd.Process.Kill()
	eventually(t, "readings from the sensor process", func() bool { return len(h.Messages("$upstream")) >= 10 })
	check(t, cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, &stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no exit after SIGTERM\n%s", &stderr)
	}
	out := stderr.String()
	for _, want := range []string{"temperature sensor started", "settings applied", "stopped"} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %q:\n%s", want, out)
		}
	}
	if n, sent := strings.Count(out, "\n"), len(h.Messages("$upstream")); n > 8 {
		t.Errorf("%d log lines for %d messages: logging per message?\n%s", n, sent, out)
	}

	// No environment: exit 1 and one error line.
	cmd = exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SAMPLES_TEST_MAIN=filter", client.EnvConnectionString+"=")
	out2, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.HasPrefix(string(out2), "error: ") ||
		strings.Count(string(out2), "\n") != 1 || !strings.Contains(string(out2), "IOTEDGE_MODULEID") {
		t.Errorf("filter without environment: %v %q", err, out2)
	}
}
