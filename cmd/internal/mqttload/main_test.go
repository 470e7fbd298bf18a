package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// allowAll is mochi's auth.AllowHook. That package imports gopkg.in/yaml.v3,
// which go.mod does not list; these three methods are all the hook is.
type allowAll struct{ mochi.HookBase }

func (allowAll) ID() string { return "allow-all" }

func (allowAll) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

func (allowAll) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }

func (allowAll) OnACLCheck(*mochi.Client, string, bool) bool { return true }

// startMochi runs an allow-all mochi broker in this process and returns its
// URL: ssl:// when tlsConf is given.
func startMochi(t *testing.T, tlsConf ...*tls.Config) string {
	t.Helper()
	srv := mochi.New(&mochi.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.AddHook(new(allowAll), nil); err != nil {
		t.Fatal(err)
	}
	lc := listeners.Config{ID: "t", Address: "127.0.0.1:0"}
	scheme := "tcp://"
	if len(tlsConf) > 0 {
		lc.TLSConfig, scheme = tlsConf[0], "ssl://"
	}
	tcp := listeners.NewTCP(lc)
	if err := srv.AddListener(tcp); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return scheme + tcp.Address()
}

func testConfig(broker string) config {
	c, err := parseFlags([]string{"-broker", broker, "-clients", "2", "-duration", "1s", "-warmup", "200ms"}, io.Discard)
	if err != nil {
		panic(err)
	}
	return c
}

func TestRunMochi(t *testing.T) {
	cfg := testConfig(startMochi(t))
	cfg.Label = "mochi"
	cfg.Topic = "bench/%d"
	cfg.Subscribe = "bench/#"
	cfg.PID = os.Getpid()
	rep, err := run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(summary(rep))
	if rep.Acked == 0 || rep.MsgsPerS <= 0 {
		t.Fatalf("nothing acknowledged: %+v", rep)
	}
	if rep.Errors != 0 {
		t.Errorf("errors = %d, want 0", rep.Errors)
	}
	p := []float64{rep.PubackP50ms, rep.PubackP90ms, rep.PubackP99ms, rep.PubackMaxms}
	if p[0] <= 0 || !slices.IsSorted(p) {
		t.Errorf("percentiles p50, p90, p99, max = %v: want positive and ordered", p)
	}
	if rep.Seconds < 0.9 || rep.Seconds > 1.5 {
		t.Errorf("window = %v s, want ≈ 1", rep.Seconds)
	}
	if rep.Delivered == nil || *rep.Delivered == 0 {
		t.Errorf("delivered = %v, want > 0", rep.Delivered)
	}
	for name, v := range map[string]*float64{"cpu": rep.BrokerCPUPct, "µs/msg": rep.BrokerUsPerMsg, "rss": rep.BrokerRSSMB, "peak": rep.BrokerRSSPeakMB} {
		if v == nil || *v <= 0 {
			t.Errorf("broker %s = %v, want > 0 (the broker is this process)", name, v)
		}
	}

	var out, human bytes.Buffer
	if err := writeReport(&out, &human, rep); err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(out.Bytes(), &fields); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, out.Bytes())
	}
	for _, k := range []string{"label", "clients", "qos", "inflight", "size", "rate", "seconds", "acked", "msgs_per_s",
		"puback_p50_ms", "puback_p90_ms", "puback_p99_ms", "puback_max_ms", "errors", "delivered",
		"broker_cpu_pct", "broker_us_per_msg", "broker_rss_mb", "broker_rss_peak_mb"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("JSON has no %q: %s", k, out.Bytes())
		}
	}
	if fields["label"] != "mochi" || fields["clients"] != 2.0 || fields["inflight"] != 16.0 {
		t.Errorf("parameters not echoed: %s", out.Bytes())
	}
	if lines := strings.Count(human.String(), "\n"); lines != 1 || !strings.HasPrefix(human.String(), "mochi: ") {
		t.Errorf("summary = %q, want one line starting with the label", human.String())
	}
}

func TestRunPaced(t *testing.T) {
	cfg := testConfig(startMochi(t))
	cfg.Rate = 200
	cfg.Duration = 2 * time.Second
	rep, err := run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(summary(rep))
	if rep.MsgsPerS < 160 || rep.MsgsPerS > 240 {
		t.Errorf("paced at 200 msg/s, measured %v msg/s", rep.MsgsPerS)
	}
	if rep.Delivered != nil || rep.BrokerCPUPct != nil {
		t.Errorf("delivered and broker figures must be null without -subscribe and -pid: %+v", rep)
	}
}

func TestRunClosedLoopQoS0(t *testing.T) {
	cfg := testConfig(startMochi(t))
	cfg.Inflight, cfg.QoS, cfg.Warmup = 1, 0, 0
	rep, err := run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Acked == 0 || rep.Errors != 0 {
		t.Errorf("qos 0 closed loop: %+v", rep)
	}
}

func TestRunTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	broker := startMochi(t, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	cfg := testConfig(broker)
	cfg.Duration, cfg.Warmup = 300*time.Millisecond, 0
	if _, err := run(context.Background(), cfg); err == nil {
		t.Error("connected to a broker whose certificate is not trusted")
	}
	cfg.CAFile = t.TempDir() + "/ca.pem"
	if err := os.WriteFile(cfg.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Acked == 0 || rep.Errors != 0 {
		t.Errorf("over TLS: %+v", rep)
	}
}

func TestConnectFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	rep, err := run(context.Background(), testConfig("tcp://"+addr))
	if err == nil || !strings.Contains(err.Error(), "connect load-0") {
		t.Errorf("err = %v, want a connect error naming the client", err)
	}
	if rep.Seconds != 0 {
		t.Errorf("a failed run reports a window: %+v", rep)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-clients", "0"}, {"-qos", "3"}, {"-inflight", "0"}, {"-duration", "0s"}, {"-rate", "-1"},
		{"-password", "x", "-password-cmd", "echo y"},
		{"-stamp", "-size", "7"}, {"-receive", "a/#", "-subscribe", "b/#"}, {"-receive", "a/#", "-stamp"},
		{"-ready", "f"}, {"-receive", "a/#", "-receive-wait", "0s"},
	} {
		c, err := parseFlags(args, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.validate(); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	if _, err := parseFlags([]string{"extra"}, io.Discard); err == nil {
		t.Error("positional argument accepted")
	}
}

func TestReceiveFlags(t *testing.T) {
	c, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Stamp || c.Receive != "" || c.Ready != "" || c.ReceiveWait != 30*time.Second {
		t.Errorf("defaults: stamp %v, receive %q, ready %q, receive-wait %v; want off, 30s", c.Stamp, c.Receive, c.Ready, c.ReceiveWait)
	}
	c, err = parseFlags([]string{"-receive", "devices/gw1/modules/b/inputs/#", "-ready", "/tmp/r", "-receive-wait", "5s", "-client-id", "gw1/b"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Receive != "devices/gw1/modules/b/inputs/#" || c.Ready != "/tmp/r" || c.ReceiveWait != 5*time.Second || c.ClientID != "gw1/b" {
		t.Errorf("parsed %+v", c)
	}
	if err := c.validate(); err != nil {
		t.Errorf("a receiver's flags: %v", err)
	}
	c, err = parseFlags([]string{"-stamp", "-size", "8"}, io.Discard)
	if err != nil || !c.Stamp {
		t.Fatalf("-stamp: %+v, %v", c, err)
	}
	if err := c.validate(); err != nil {
		t.Errorf("-stamp with 8-byte payloads: %v", err)
	}
}

func TestLatency(t *testing.T) {
	sent := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
	p := make([]byte, 100)
	for i := range p {
		p[i] = 'x'
	}
	stamp(p, sent)
	if d, ok := latency(p, sent.Add(3*time.Millisecond+7)); !ok || d != 3*time.Millisecond+7 {
		t.Errorf("latency = %v, %v; want 3.000007ms", d, ok)
	}
	if string(p[stampSize:]) != strings.Repeat("x", 100-stampSize) {
		t.Error("stamp wrote past its 8 bytes")
	}
	if d, ok := latency(p[:stampSize], sent); !ok || d != 0 {
		t.Errorf("8-byte payload: %v, %v", d, ok)
	}
	if _, ok := latency(p[:stampSize-1], sent); ok {
		t.Error("a 7-byte payload has a send time")
	}
}

// TestReceiveMochi: a receiving process's half (-receive) gets a stamping
// publisher's messages through mochi and times them from the stamps.
func TestReceiveMochi(t *testing.T) {
	broker := startMochi(t)
	ready := t.TempDir() + "/ready"
	rc, err := parseFlags([]string{"-broker", broker, "-receive", "bench/#", "-ready", ready, "-client-id", "rx",
		"-duration", "1s", "-warmup", "200ms", "-label", "rx", "-pid", strconv.Itoa(os.Getpid())}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		rep receiveReport
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := receive(context.Background(), rc)
		done <- result{rep, err}
	}()
	for i := 0; ; i++ {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if i == 500 {
			t.Fatal("no ready file after 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	pc := testConfig(broker)
	pc.Clients, pc.Topic, pc.Stamp, pc.Duration = 1, "bench/%d", true, 1500*time.Millisecond
	pub, err := run(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	rep := res.rep
	t.Log(summary(pub))
	t.Log(receiveSummary(rep))
	if rep.Delivered == 0 || rep.Unstamped != 0 || rep.Disconnects != 0 {
		t.Fatalf("receiver: %+v", rep)
	}
	if x := rep.DeliveredPerS / pub.MsgsPerS; x < 0.5 || x > 1.5 {
		t.Errorf("delivered %v msg/s of %v published", rep.DeliveredPerS, pub.MsgsPerS)
	}
	p := []float64{rep.LatencyP50ms, rep.LatencyP90ms, rep.LatencyP99ms, rep.LatencyMaxms}
	if p[0] <= 0 || p[3] > 5000 || !slices.IsSorted(p) {
		t.Errorf("latency p50, p90, p99, max = %v ms: want positive, ordered, under 5 s", p)
	}
	if rep.BrokerCPUPct == nil || rep.BrokerUsPerMsg == nil || rep.BrokerRSSMB == nil {
		t.Errorf("broker figures missing with -pid: %+v", rep)
	}
	var out, human bytes.Buffer
	if err := writeLine(&out, &human, rep, receiveSummary(rep)); err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(out.Bytes(), &fields); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, out.Bytes())
	}
	for _, k := range []string{"label", "delivered", "delivered_per_s", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_max_ms"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("JSON has no %q: %s", k, out.Bytes())
		}
	}
	if _, ok := fields["msgs_per_s"]; ok || fields["label"] != "rx" {
		t.Errorf("a receiver's JSON has a publisher's msgs_per_s or lost its label: %s", out.Bytes())
	}
}

func TestReceiveNothing(t *testing.T) {
	ready := t.TempDir() + "/ready"
	c, err := parseFlags([]string{"-broker", startMochi(t), "-receive", "quiet/#", "-ready", ready, "-receive-wait", "300ms"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := receive(context.Background(), c)
	if err == nil || !strings.Contains(err.Error(), "nothing delivered") {
		t.Errorf("err = %v, want nothing delivered", err)
	}
	if rep.Seconds != 0 {
		t.Errorf("a run without deliveries reports a window: %+v", rep)
	}
	if _, err := os.Stat(ready); err != nil {
		t.Errorf("no ready file once subscribed: %v", err)
	}
}

func TestIdentity(t *testing.T) {
	c := config{ClientID: "load-%d", Topic: "devices/load-%d/messages/events/", Username: "hub/load-%d/?api-version=2021-04-12",
		PasswordCmd: "printf '  SharedAccessSignature sr=load-%d 100%%\\n'"}
	id, err := c.identity(context.Background(), 7)
	if err != nil {
		t.Fatal(err)
	}
	want := identity{"load-7", "devices/load-7/messages/events/", "hub/load-7/?api-version=2021-04-12", "SharedAccessSignature sr=load-7 100%"}
	if id != want {
		t.Errorf("identity = %+v, want %+v", id, want)
	}
	c.PasswordCmd = "echo oops >&2; exit 3"
	if _, err := c.identity(context.Background(), 1); err == nil || !strings.Contains(err.Error(), "oops") {
		t.Errorf("failing password command: err = %v, want its stderr", err)
	}
	if got := expand("fixed 50%", 3); got != "fixed 50%" {
		t.Errorf("expand without %%d = %q", got)
	}
}

func TestReadProcSelf(t *testing.T) {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) { // burn CPU until at least one tick is charged
		if s, _ := readProc(os.Getpid()); s.ticks > 0 {
			break
		}
	}
	s, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.ticks == 0 || s.rssKB == 0 || s.hwmKB < s.rssKB {
		t.Errorf("sample of this process = %+v: want ticks > 0, rss > 0, hwm ≥ rss", s)
	}
	r := startRSSSampler(os.Getpid(), 10*time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	if peak, err := r.Stop(); err != nil || peak == 0 {
		t.Errorf("sampler: peak %d kB, err %v", peak, err)
	}
	if _, err := readProc(1 << 30); err == nil {
		t.Error("no error for a missing process")
	}
}

func TestParseStat(t *testing.T) {
	stat := "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 1500 250 0 0 20 0 9 0 100 1000000 2000 18446744073709551615\n"
	got, err := parseStatTicks([]byte(stat))
	if err != nil || got != 1750 {
		t.Errorf("ticks = %d, %v; want 1750", got, err)
	}
	if _, err := parseStatTicks([]byte("1 (x) S 1 2")); err == nil {
		t.Error("short stat accepted")
	}
	status := "Name:\tmosquitto\nVmHWM:\t    9012 kB\nVmRSS:\t    8800 kB\n"
	if rss, hwm := parseStatusKB([]byte(status), "VmRSS:"), parseStatusKB([]byte(status), "VmHWM:"); rss != 8800 || hwm != 9012 {
		t.Errorf("rss, hwm = %d, %d", rss, hwm)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	r := mrand.New(mrand.NewPCG(1, 2))
	var parts [4]histogram
	var all []int64
	for i := range 100000 {
		v := int64(r.ExpFloat64() * 1e6) // ~1 ms mean, in ns
		if i%1000 == 0 {
			v *= 100
		}
		all = append(all, v)
		parts[i%4].record(time.Duration(v))
	}
	var h histogram
	for i := range parts {
		h.merge(&parts[i])
	}
	slices.Sort(all)
	if h.n != uint64(len(all)) || h.max != all[len(all)-1] {
		t.Fatalf("n, max = %d, %d; want %d, %d", h.n, h.max, len(all), all[len(all)-1])
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		exact := float64(all[int(q*float64(len(all)))-1])
		got := float64(h.quantile(q))
		if d := (got - exact) / exact; d < -0.01 || d > 0.01 {
			t.Errorf("q%v = %v, exact %v (%.2f%% off)", q, got, exact, 100*d)
		}
	}
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 1e6, 1 << 40} {
		lo, w := bucketRange(bucketOf(v))
		if v < lo || v >= lo+w {
			t.Errorf("%d falls in bucket [%d, %d)", v, lo, lo+w)
		}
	}
	var empty histogram
	if empty.quantile(0.5) != 0 {
		t.Error("empty histogram has a median")
	}
}

// TestMosquitto runs the tool against a real Mosquitto when one is installed.
func TestMosquitto(t *testing.T) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		t.Skip("mosquitto not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := t.TempDir() + "/mosquitto.conf"
	if err := os.WriteFile(conf, []byte("listener "+strconv.Itoa(port)+" 127.0.0.1\nallow_anonymous true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if i == 100 {
			t.Fatalf("mosquitto does not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cfg := testConfig("tcp://" + addr)
	cfg.Label, cfg.Topic, cfg.Subscribe, cfg.PID = "mosquitto", "bench/%d", "bench/#", cmd.Process.Pid
	rep, err := run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(summary(rep))
	if rep.Acked == 0 || rep.Errors != 0 || rep.BrokerRSSMB == nil {
		t.Errorf("mosquitto run: %+v", rep)
	}
}
