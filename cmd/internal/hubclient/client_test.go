package hubclient_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/identity/sas"
)

var ownerKey = []byte("0123456789abcdef0123456789abcdef")

func ownerCS(host string) string {
	return "HostName=" + host + ";SharedAccessKeyName=owner;SharedAccessKey=" + base64.StdEncoding.EncodeToString(ownerKey)
}

// newHub starts a server that refuses requests without a valid owner SAS
// token for host or without api-version, and passes the rest to h.
func newHub(t *testing.T, h http.HandlerFunc) (*hubclient.Client, *httptest.Server) {
	t.Helper()
	const host = "hub.test:8080"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := checkAuth(r, host); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"code":"Unauthorized","message":%q}`, err.Error())
			return
		}
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	c, err := hubclient.FromEnv(ownerCS(host), srv.URL, func(string) string { return "" }, hubclient.Trust{})
	if err != nil {
		t.Fatal(err)
	}
	return c, srv
}

func checkAuth(r *http.Request, host string) error {
	if v := r.URL.Query().Get("api-version"); v != hubclient.APIVersion {
		return fmt.Errorf("api-version is %q", v)
	}
	tok, err := sas.ParseToken(r.Header.Get("Authorization"))
	if err != nil {
		return err
	}
	if tok.KeyName != "owner" {
		return fmt.Errorf("skn is %q, want owner", tok.KeyName)
	}
	if tok.Expiry.Before(time.Now().Add(50 * time.Minute)) {
		return fmt.Errorf("token expires at %s, want an hour", tok.Expiry)
	}
	return sas.Verify(tok, host, [][]byte{ownerKey}, time.Now(), 0)
}

func TestClientFromEnv(t *testing.T) {
	devCS := "HostName=h:1;DeviceId=d;SharedAccessKey=" + base64.StdEncoding.EncodeToString(ownerKey)
	tests := []struct {
		name            string
		flagCS, flagURL string
		env             map[string]string
		wantURL         string
		wantPlain       bool
		wantErr         string
	}{
		{name: "nothing set", wantErr: "set OUTPOST_HUB_CONNECTION_STRING (the hub writes it to <data>/owner.connection-string)"},
		{name: "url from HostName", env: map[string]string{"OUTPOST_HUB_CONNECTION_STRING": ownerCS("10.0.0.1:8080")}, wantURL: "https://10.0.0.1:8080"},
		{name: "url from loopback HostName", env: map[string]string{"OUTPOST_HUB_CONNECTION_STRING": ownerCS("127.0.0.1:8080")}, wantURL: "http://127.0.0.1:8080"},
		{name: "env url", env: map[string]string{"OUTPOST_HUB_CONNECTION_STRING": ownerCS("h:1"), "OUTPOST_HUB_URL": "https://hub.example:443/"}, wantURL: "https://hub.example:443"},
		{name: "flags win", flagCS: ownerCS("f:2"), flagURL: "127.0.0.1:9", env: map[string]string{"OUTPOST_HUB_CONNECTION_STRING": "junk", "OUTPOST_HUB_URL": "ftp://x"}, wantURL: "http://127.0.0.1:9"},
		{name: "device connection string", flagCS: devCS, wantErr: "--hub-connection-string is a device's or module's connection string"},
		{name: "no key", env: map[string]string{"OUTPOST_HUB_CONNECTION_STRING": "HostName=h:1;SharedAccessKeyName=owner"}, wantErr: "OUTPOST_HUB_CONNECTION_STRING: invalid connection string: SharedAccessKey is missing"},
		{name: "bad url", flagCS: ownerCS("h:1"), flagURL: "ftp://h", wantErr: "--hub-url: hub URL \"ftp://h\": want https://host[:port]"},
		{name: "plain http to a remote hub", flagCS: ownerCS("h:1"), flagURL: "http://hub.example:8080",
			wantErr: "--hub-url: plain HTTP to a hub that is not on this machine: http://hub.example:8080: the owner's token would cross the network readable"},
		{name: "plain http to a remote hub from the env", env: map[string]string{"OUTPOST_HUB_CONNECTION_STRING": ownerCS("h:1"), "OUTPOST_HUB_URL": "hub.example:8080"},
			wantErr: "OUTPOST_HUB_URL: plain HTTP to a hub that is not on this machine"},
		{name: "plain http to a remote node of a list", flagCS: ownerCS("h:1"), flagURL: "http://127.0.0.1:9,http://hub.example:8080",
			wantErr: "--hub-url: plain HTTP to a hub that is not on this machine: http://hub.example:8080"},
		{name: "a name that looks local", flagCS: ownerCS("h:1"), flagURL: "http://localhost.evil.com:8080", wantErr: "pass --insecure-link (OUTPOST_INSECURE_LINK=1) to accept the risk"},
		{name: "plain http accepted with OUTPOST_INSECURE_LINK", flagCS: ownerCS("h:1"), flagURL: "http://hub.example:8080",
			env: map[string]string{"OUTPOST_INSECURE_LINK": "1"}, wantURL: "http://hub.example:8080", wantPlain: true},
		{name: "missing CA file", flagCS: ownerCS("h:1"), env: map[string]string{"OUTPOST_HUB_CA": "/nonexistent/ca.pem"}, wantErr: "OUTPOST_HUB_CA: open /nonexistent/ca.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := hubclient.FromEnv(tt.flagCS, tt.flagURL, func(k string) string { return tt.env[k] }, hubclient.Trust{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(ownerKey)) {
					t.Errorf("the error shows the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.URL != tt.wantURL || c.PlainRemote != tt.wantPlain {
				t.Errorf("URL = %q, PlainRemote %v; want %q, %v", c.URL, c.PlainRemote, tt.wantURL, tt.wantPlain)
			}
		})
	}
}

func TestClientDo(t *testing.T) {
	c, _ := newHub(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || r.URL.Path != "/devices/a#b" || r.URL.EscapedPath() != "/devices/a%23b" {
			t.Errorf("got %s %s", r.Method, r.URL.EscapedPath())
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		body, _ := io.ReadAll(r.Body)
		if string(body) != `{"deviceId":"a#b","status":"enabled","capabilities":{"iotEdge":true}}`+"\n" {
			t.Errorf("body %s", body)
		}
		io.WriteString(w, `{"deviceId":"a#b","deviceScope":"ms-azure-iot-edge://a#b-1"}`)
	})
	var got identity.JSON
	in := identity.JSON{DeviceID: "a#b", Status: "enabled", Capabilities: &identity.Capabilities{IoTEdge: true}}
	if err := c.Do(context.Background(), http.MethodPut, hubclient.PathOf("devices", "a#b"), in, &got); err != nil {
		t.Fatal(err)
	}
	if got.DeviceScope != "ms-azure-iot-edge://a#b-1" {
		t.Errorf("decoded %+v", got)
	}
}

func TestClientRawBodyAndHeaders(t *testing.T) {
	c, _ := newHub(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got := fmt.Sprintf("%s %s %s %q id=%v temp=%v", r.Method, r.URL.Path, r.Header.Get("Content-Type"), body,
			r.Header.Values("iothub-messageid"), r.Header.Values("iothub-app-Temp"))
		want := `POST /devices/d1/messages/deviceBound application/octet-stream "reboot" id=[m-1] temp=[21 22]`
		if got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
		w.WriteHeader(http.StatusNoContent)
	})
	// Go's server canonicalizes header names; look at them as sent.
	var sent []string
	c.HTTP = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		for k := range r.Header {
			if strings.HasPrefix(strings.ToLower(k), "iothub-") {
				sent = append(sent, k)
			}
		}
		return http.DefaultTransport.RoundTrip(r)
	})}
	msg := hubclient.C2D{MessageID: "m-1", Properties: [][2]string{{"Temp", "21"}, {"Temp", "22"}}, Payload: []byte("reboot")}
	if err := c.SendC2D(context.Background(), "d1", msg); err != nil {
		t.Fatal(err)
	}
	slices.Sort(sent)
	if fmt.Sprint(sent) != "[iothub-app-Temp iothub-messageid]" {
		t.Errorf("header names sent: %v", sent)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestClientAPIError(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   string
		code   string
	}{
		{"hub json", 404, `{"code":"DeviceNotFound","message":"device \"x\" not found"}`, `hub: 404 DeviceNotFound: device "x" not found`, "DeviceNotFound"},
		{"no code", 409, `{"message":"exists"}`, `hub: 409 Conflict: exists`, "Conflict"},
		{"html", 502, "<html>\n<body>bad gateway</body>\n</html>", `hub: 502 Bad Gateway: <html> <body>bad gateway</body> </html>`, "Bad Gateway"},
		{"empty", 500, "", `hub: 500 Internal Server Error`, "Internal Server Error"},
		{"long", 400, strings.Repeat("x", 1000), `hub: 400 Bad Request: ` + strings.Repeat("x", 200) + "…", "Bad Request"},
		{"unauthorized", 401, `{"code":"Unauthorized","message":"bad signature"}`, `hub: 401 Unauthorized: bad signature (is the connection string this hub's <data>/owner.connection-string?)`, "Unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newHub(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			})
			err := c.Do(context.Background(), http.MethodGet, "/devices/x", nil, nil)
			var ae *hubclient.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v (%T), want *APIError", err, err)
			}
			if ae.Status != tt.status || ae.Code != tt.code || err.Error() != tt.want {
				t.Errorf("got %d %q %q\nwant %d %q %q", ae.Status, ae.Code, err, tt.status, tt.code, tt.want)
			}
			if hubclient.StatusOf(fmt.Errorf("wrapped: %w", err)) != tt.status {
				t.Errorf("StatusOf does not see through wrapping")
			}
		})
	}
}

func TestClientRejectedToken(t *testing.T) {
	_, srv := newHub(t, func(http.ResponseWriter, *http.Request) { t.Error("reached the handler") })
	other, err := hubclient.FromEnv(ownerCS("other.host:1"), srv.URL, func(string) string { return "" }, hubclient.Trust{})
	if err != nil {
		t.Fatal(err)
	}
	err = other.Do(context.Background(), http.MethodGet, "/devices", nil, nil)
	if hubclient.StatusOf(err) != http.StatusUnauthorized || !strings.Contains(err.Error(), "another resource") {
		t.Errorf("err = %v, want a 401 for the wrong resource", err)
	}
}

func TestClientUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := hubclient.FromEnv(ownerCS(addr), "", func(string) string { return "" }, hubclient.Trust{})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Do(context.Background(), http.MethodGet, "/devices", nil, nil)
	if !errors.Is(err, hubclient.ErrUnreachable) || !hubclient.Retryable(err) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	for _, want := range []string{"hub at http://" + addr + " is not reachable", "connection refused", "OUTPOST_HUB_URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "api-version") {
		t.Errorf("%q quotes the request URL", err)
	}
}

func TestClientMethodTimeoutOutlastsDefault(t *testing.T) {
	c, _ := newHub(t, func(w http.ResponseWriter, r *http.Request) {
		var req map[string]any
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			t.Error(err)
		}
		if r.URL.Path != "/twins/d/modules/m/methods" || req["methodName"] != "reboot" || req["payload"] != nil ||
			req["responseTimeoutInSeconds"] != 5.0 || req["connectTimeoutInSeconds"] != 0.0 {
			t.Errorf("%s %v", r.URL.Path, req)
		}
		time.Sleep(100 * time.Millisecond) // longer than the client's default timeout below
		io.WriteString(w, `{"status":200,"payload":{"ok":true}}`)
	})
	c.Timeout = time.Millisecond
	out, err := c.InvokeMethod(context.Background(), "d", "m", "reboot", nil, 5*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"status":200,"payload":{"ok":true}}` {
		t.Errorf("answer %s", out)
	}
}

// eventLog is a fake event log: GET /messages/events with from, limit and
// wait, at most pageMax events a page. A long poll that finds nothing calls
// onWait, which may add events.
type eventLog struct {
	mu      sync.Mutex
	events  []string // raw JSON, seq i+1 at index i
	froms   []string
	pageMax int
	onWait  func(l *eventLog)
	repeat  bool // answer one event before from as well (a misbehaving hub)
}

func (l *eventLog) add(n int) {
	for range n {
		seq := len(l.events) + 1
		l.events = append(l.events, fmt.Sprintf(`{"seq":%d,"deviceId":"d","enqueuedTime":"t","messageId":"m%d","properties":{},"systemProperties":{},"body":%q}`,
			seq, seq, base64.StdEncoding.EncodeToString([]byte("hello"))))
	}
}

func (l *eventLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	q := r.URL.Query()
	l.froms = append(l.froms, q.Get("from")+"/"+q.Get("limit")+"/"+q.Get("wait"))
	from, _ := strconv.Atoi(q.Get("from"))
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit == 0 || limit > l.pageMax {
		limit = l.pageMax
	}
	start := max(from-1, 0)
	if start >= len(l.events) && q.Get("wait") != "0" && l.onWait != nil {
		l.onWait(l)
	}
	if l.repeat && start > 0 {
		start--
	}
	end := min(start+limit, len(l.events))
	start = min(start, end)
	io.WriteString(w, "["+strings.Join(l.events[start:end], ",")+"]")
}

func follow(t *testing.T, log *eventLog, o hubclient.FollowOptions, stopAt uint64) ([]uint64, error) {
	t.Helper()
	c, _ := newHub(t, log.ServeHTTP)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var seqs []uint64
	err := c.Follow(ctx, o, func(e hubclient.Event) error {
		var back map[string]any
		if err := json.Unmarshal(e.Raw, &back); err != nil || back["messageId"] != e.MessageID {
			t.Errorf("raw %s does not match %+v", e.Raw, e)
		}
		if b, err := e.Body(); err != nil || string(b) != "hello" {
			t.Errorf("body %q, %v", b, err)
		}
		seqs = append(seqs, e.Seq)
		if e.Seq == stopAt {
			cancel()
		}
		return nil
	})
	return seqs, err
}

func TestClientEventsOnce(t *testing.T) {
	log := &eventLog{pageMax: 2}
	log.add(5)
	seqs, err := follow(t, log, hubclient.FollowOptions{From: 2}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seqs) != "[2 3 4 5]" {
		t.Errorf("seqs %v", seqs)
	}
	// from advances past the last seq seen; an empty page ends the read.
	if got := strings.Join(log.froms, " "); got != "2//0 4//0 6//0" {
		t.Errorf("requests from/limit/wait: %s", got)
	}
}

func TestClientEventsLimit(t *testing.T) {
	log := &eventLog{pageMax: 2}
	log.add(5)
	seqs, err := follow(t, log, hubclient.FollowOptions{Limit: 3}, 0)
	if err != nil || fmt.Sprint(seqs) != "[1 2 3]" {
		t.Fatalf("seqs %v, err %v", seqs, err)
	}
	if got := strings.Join(log.froms, " "); got != "0/3/0 3/1/0" {
		t.Errorf("requests from/limit/wait: %s", got)
	}
}

func TestClientEventsFollow(t *testing.T) {
	log := &eventLog{pageMax: 2, repeat: true}
	log.add(3)
	log.onWait = func(l *eventLog) { l.add(2) } // events arrive during the long poll
	seqs, err := follow(t, log, hubclient.FollowOptions{Follow: true}, 5)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if fmt.Sprint(seqs) != "[1 2 3 4 5]" {
		t.Errorf("seqs %v (the repeated event must be skipped)", seqs)
	}
	if got := strings.Join(log.froms, " "); got != "0//20 3//20 4//20 5//20" {
		t.Errorf("requests from/limit/wait: %s", got)
	}
}

func TestClientEventsFollowRetries(t *testing.T) {
	log := &eventLog{pageMax: 10}
	log.add(2)
	var mu sync.Mutex
	fails := 3
	c, _ := newHub(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		f := fails
		fails--
		mu.Unlock()
		switch {
		case f == 3: // the hub goes away mid-request
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		case f > 0:
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			log.ServeHTTP(w, r)
		}
	})
	var retries []string
	o := hubclient.FollowOptions{
		Follow: true, RetryMin: time.Millisecond, RetryMax: 3 * time.Millisecond,
		OnRetry: func(err error, d time.Duration) {
			retries = append(retries, fmt.Sprintf("%s %v", d, hubclient.Retryable(err)))
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var seqs []uint64
	err := c.Follow(ctx, o, func(e hubclient.Event) error {
		seqs = append(seqs, e.Seq)
		if e.Seq == 2 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || fmt.Sprint(seqs) != "[1 2]" {
		t.Fatalf("err %v, seqs %v", err, seqs)
	}
	if got := strings.Join(retries, ", "); got != "1ms true, 2ms true, 3ms true" {
		t.Errorf("retries: %s", got)
	}
}

func TestClientEventsNotFollowingDoesNotRetry(t *testing.T) {
	c, _ := newHub(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	err := c.Follow(context.Background(), hubclient.FollowOptions{}, func(hubclient.Event) error { return nil })
	if hubclient.StatusOf(err) != http.StatusServiceUnavailable {
		t.Errorf("err = %v, want the 503", err)
	}
}

func TestDecodeEventsNeedsSeq(t *testing.T) {
	_, err := hubclient.DecodeEvents([]json.RawMessage{json.RawMessage(`{"deviceId":"d"}`)})
	if err == nil || !strings.Contains(err.Error(), "no seq") {
		t.Errorf("err = %v", err)
	}
}

func FuzzParseError(f *testing.F) {
	f.Add(404, []byte(`{"code":"DeviceNotFound","message":"device \"x\" not found"}`))
	f.Add(502, []byte("<html>\n</html>"))
	f.Add(999, []byte(`{"code":12,"message":null}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		e := hubclient.ParseError(status, body)
		s := e.Error()
		if e.Code == "" || strings.ContainsAny(s, "\n\r") || !strings.HasPrefix(s, "hub: ") {
			t.Errorf("ParseError(%d, %q) = %q (code %q)", status, body, s, e.Code)
		}
	})
}

func FuzzDecodeEvents(f *testing.F) {
	f.Add([]byte(`[{"seq":1,"deviceId":"d","body":"aGk="}]`))
	f.Add([]byte(`[{"seq":-1}]`))
	f.Fuzz(func(t *testing.T, page []byte) {
		var raws []json.RawMessage
		if json.Unmarshal(page, &raws) != nil {
			return
		}
		evs, err := hubclient.DecodeEvents(raws)
		if err == nil && len(evs) != len(raws) {
			t.Errorf("%d events from %d", len(evs), len(raws))
		}
	})
}

// TestClientHubCA: the hub's certificate is verified against --hub-ca (or
// OUTPOST_HUB_CA) when given, else the system's roots; a certificate from
// another CA is refused, there is no way to skip the check.
func TestClientHubCA(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := checkAuth(r, "hub.test:8080"); err != nil {
			t.Errorf("auth: %v", err)
		}
		io.WriteString(w, `[]`)
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	writeCA := func(name string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	right, wrong := writeCA("right.pem", srv.Certificate().Raw), writeCA("wrong.pem", otherCA(t))
	tests := []struct {
		name    string
		trust   hubclient.Trust
		env     map[string]string
		wantErr string
	}{
		{name: "--hub-ca", trust: hubclient.Trust{CAFile: right}},
		{name: "OUTPOST_HUB_CA", env: map[string]string{"OUTPOST_HUB_CA": right}},
		{name: "the flag wins", trust: hubclient.Trust{CAFile: right}, env: map[string]string{"OUTPOST_HUB_CA": wrong}},
		{name: "wrong CA", trust: hubclient.Trust{CAFile: wrong}, wantErr: "certificate signed by unknown authority"},
		{name: "wrong CA, insecure link", trust: hubclient.Trust{CAFile: wrong, Insecure: true}, wantErr: "certificate signed by unknown authority"},
		{name: "system roots", wantErr: "certificate signed by unknown authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := hubclient.FromEnv(ownerCS("hub.test:8080"), srv.URL, func(k string) string { return tt.env[k] }, tt.trust)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Do(context.Background(), http.MethodGet, "/devices", nil, nil)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// otherCA returns a self-signed CA certificate (DER) for 127.0.0.1 that
// signed nothing the test servers present.
func otherCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "another CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestClientDoPage: a paged listing is followed with x-ms-continuation
// until an answer has none.
func TestClientDoPage(t *testing.T) {
	c, _ := newHub(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.Header.Get("x-ms-continuation") {
		case "":
			w.Header().Set("x-ms-continuation", "p2")
			fmt.Fprint(w, `[1,2]`)
		case "p2":
			fmt.Fprint(w, `[3]`)
		default:
			w.WriteHeader(400)
		}
	})
	var all []int
	cont := ""
	for i := 0; i < 5; i++ {
		var page []int
		next, err := c.DoPage(context.Background(), "/jobs/v2/query", cont, &page)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if next == "" {
			break
		}
		cont = next
	}
	if fmt.Sprint(all) != "[1 2 3]" {
		t.Fatalf("pages %v", all)
	}
}
