package check

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/certs"
	"github.com/outpost-edge/outpost/cmd/internal/edge"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/sync/hub"
)

// A certificate is an error once expired, a warning within 30 days of its
// expiry, fine before; the message says when, the fix what to do.
func TestCertificateExpiry(t *testing.T) {
	dir := t.TempDir()
	if _, err := certs.LocalCAValid(dir, []string{"127.0.0.1"}, 60*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(dir, certs.ServerFile), filepath.Join(dir, certs.ServerKeyFile)
	for _, c := range []struct {
		after time.Duration
		level Level
		says  string
	}{
		{0, OK, "valid until"},
		{40 * 24 * time.Hour, Warn, "expires in 20 days"},
		{61 * 24 * time.Hour, Error, "expired on"},
	} {
		now := time.Now().Add(c.after)
		fs := Run(context.Background(), Options{Config: edge.Config{TLSCert: cert, TLSKey: key, HubURL: "off"}, Now: func() time.Time { return now }})
		got := find(fs, "certificates")
		if len(got) != 1 || got[0].Level != c.level || !strings.Contains(got[0].Message, c.says) {
			t.Errorf("%s later: %+v, want one %s saying %q", c.after, got, c.level, c.says)
		}
		if c.level != OK && got[0].Fix == "" {
			t.Errorf("%s later: no fix", c.after)
		}
	}
}

// A data directory that does not exist is most often a mistyped --data:
// the check says so rather than only that the edge is not running.
func TestDataDirMissing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "no-such-edge")
	fs := Run(context.Background(), Options{DataDir: dir, Config: edge.Config{HubURL: "off"}})
	if e := find(fs, "edge"); len(e) != 1 || e[0].Level != Warn || !strings.Contains(e[0].Message, dir+" does not exist") || !strings.Contains(e[0].Fix, "--data") {
		t.Errorf("edge findings %+v, want one warning that %s does not exist, with a fix naming --data", e, dir)
	}
}

// A listener address another program holds is an error naming the flag;
// a free one is fine. The edge is not running: the check says so and
// exits 0 only without errors.
func TestPortsOfAnEdgeNotRunning(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fs := Run(context.Background(), Options{DataDir: t.TempDir(), Config: edge.Config{MQTT: l.Addr().String(), HubURL: "off"}})
	if e := find(fs, "edge"); len(e) != 1 || e[0].Level != Warn || !strings.Contains(e[0].Message, "is not running") {
		t.Errorf("edge: %+v, want a warning that it is not running", e)
	}
	p := find(fs, "ports")
	if len(p) != 1 || p[0].Level != Error || !strings.Contains(p[0].Message, "--mqtt "+l.Addr().String()+": in use by another program") {
		t.Errorf("ports: %+v, want the --mqtt address in use", p)
	}
	if !Failed(fs) {
		t.Error("Failed: false with an error finding")
	}
	var table, js bytes.Buffer
	Print(&table, fs)
	if !strings.Contains(table.String(), "× ports: --mqtt ") || !strings.Contains(table.String(), "‼ edge: ") {
		t.Errorf("table:\n%s", table.String())
	}
	if err := PrintJSON(&js, fs); err != nil {
		t.Fatal(err)
	}
	var back []Finding
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back) != len(fs) {
		t.Errorf("JSON %s: %v", js.String(), err)
	}
}

// One Hello with the edge's key, to a real hub: accepted, refused with 401
// (wrong key) or 403 (disabled), each named with what to do; the clock is
// compared with the hub's.
func TestCredentialsAgainstAHub(t *testing.T) {
	ctx := context.Background()
	h, err := hub.Open(ctx, "", hub.Options{HostName: "hub.test", OwnerKey: []byte("owner-key"), InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h.Handler())
	t.Cleanup(func() { srv.Close(); _ = h.Close() })
	gw, err := h.PutDevice(ctx, identity.JSON{DeviceID: "gw1", Capabilities: &identity.Capabilities{IoTEdge: true}})
	if err != nil {
		t.Fatal(err)
	}
	cs := func(key []byte) string {
		return sas.ConnString{HostName: "hub.test", DeviceID: "gw1", SharedAccessKey: key}.String()
	}
	run := func(key []byte) (hubF, cred, clock []Finding) {
		fs := Run(ctx, Options{Config: edge.Config{HubURL: srv.URL}, ConnectionString: cs(key)})
		return find(fs, "hub"), find(fs, "credentials"), find(fs, "clock")
	}
	hubF, cred, clock := run(gw.Auth.PrimaryKey)
	if len(hubF) != 1 || hubF[0].Level != OK || len(cred) != 1 || cred[0].Level != OK || len(clock) != 1 || clock[0].Level != OK {
		t.Errorf("right key: hub %+v credentials %+v clock %+v", hubF, cred, clock)
	}
	_, cred, _ = run([]byte("wrong-key-wrong-key-wrong-key!!"))
	if len(cred) != 1 || cred[0].Level != Error || !strings.Contains(cred[0].Message, "(401 unauthorized)") || !strings.Contains(cred[0].Fix, "connection string/key") {
		t.Errorf("wrong key: %+v", cred)
	}
	if _, err := h.PutDevice(ctx, identity.JSON{DeviceID: "gw1", Status: "disabled", Capabilities: &identity.Capabilities{IoTEdge: true},
		Authentication: &identity.Authentication{Type: identity.AuthSAS, SymmetricKey: &identity.SymmetricKey{PrimaryKey: gw.Auth.PrimaryKey, SecondaryKey: gw.Auth.SecondaryKey}}}); err != nil {
		t.Fatal(err)
	}
	_, cred, _ = run(gw.Auth.PrimaryKey)
	if len(cred) != 1 || cred[0].Level != Error || !strings.Contains(cred[0].Message, "(403 forbidden)") || !strings.Contains(cred[0].Fix, "enabled edge device") {
		t.Errorf("disabled: %+v", cred)
	}
	// Plain HTTP to a hub that is not on loopback: the key's token is not sent.
	fs := Run(ctx, Options{Config: edge.Config{HubURL: "http://hub.example:8080"}, ConnectionString: cs(gw.Auth.PrimaryKey)})
	if f := find(fs, "hub"); len(f) != 1 || f[0].Level != Error || !strings.Contains(f[0].Message, "not asked") {
		t.Errorf("plain http to a remote hub: %+v", f)
	}
	srv.Close()
	hubF, _, _ = run(gw.Auth.PrimaryKey)
	if len(hubF) != 1 || hubF[0].Level != Error || !strings.Contains(hubF[0].Message, "unreachable") {
		t.Errorf("hub down: %+v", hubF)
	}
}
