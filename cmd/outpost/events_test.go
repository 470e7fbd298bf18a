package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/identity/sas"
	synchub "github.com/outpost-edge/outpost/sync/hub"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// eventHub is a real hub (sync/hub, in memory) with an edge gw1 that
// posts device-to-cloud events over the link's protocol, and a count of
// the event long-polls in flight.
type eventHub struct {
	h       *synchub.Hub
	url     string
	gwKey   []byte
	seq     uint64
	polling atomic.Int64
}

func newEventHub(t *testing.T) *eventHub {
	t.Helper()
	h, err := synchub.Open(context.Background(), "", synchub.Options{HostName: fakeHubHost, OwnerKey: fakeOwnerKey, InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	eh := &eventHub{h: h}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/messages/events" {
			eh.polling.Add(1)
			defer eh.polling.Add(-1)
		}
		h.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(func() { h.Stop(); srv.Close(); _ = h.Close() })
	eh.url = srv.URL
	gw, err := h.PutDevice(context.Background(), identity.JSON{DeviceID: "gw1", Capabilities: &identity.Capabilities{IoTEdge: true}})
	if err != nil {
		t.Fatal(err)
	}
	eh.gwKey = gw.Auth.PrimaryKey
	if _, err := h.PutModule(context.Background(), identity.JSON{DeviceID: "gw1", ModuleID: "filter"}); err != nil {
		t.Fatal(err)
	}
	return eh
}

// post sends one event from gw1's module filter with body, as the edge's
// link does.
func (eh *eventHub) post(t *testing.T, body []byte) {
	t.Helper()
	eh.seq++
	frame, enc, err := protocol.Encode(protocol.Messages{Instance: "edge:gw1.a", Queue: "$upstream/pdefault",
		Msgs: []protocol.Message{{Seq: eh.seq, ID: "m" + string(rune('0'+eh.seq)), Source: "devices/gw1/modules/filter", Body: body}}})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, eh.url+protocol.PathMessages, bytes.NewReader(frame))
	req.Header.Set("Authorization", sas.NewToken(fakeHubHost+"/devices/gw1", eh.gwKey, "", time.Now().Add(time.Hour)))
	req.Header.Set("Content-Type", protocol.ContentType)
	if enc != "" {
		req.Header.Set("Content-Encoding", enc)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var ack protocol.MessagesAck
	if resp.StatusCode != http.StatusOK || protocol.DecodeBytes(data, &ack) != nil || ack.Appended != 1 {
		t.Fatalf("post an event: %d %+v", resp.StatusCode, ack)
	}
}

func (eh *eventHub) env(stdout, stderr io.Writer) cli.Env {
	env := map[string]string{
		"OUTPOST_HUB_CONNECTION_STRING": "HostName=" + fakeHubHost + ";SharedAccessKeyName=owner;SharedAccessKey=" + base64.StdEncoding.EncodeToString(fakeOwnerKey),
		"OUTPOST_HUB_URL":               eh.url,
	}
	return cli.Env{Stdout: stdout, Stderr: stderr, Getenv: func(k string) string { return env[k] }}
}

// TestEventsBodyDecoded: events prints bodyDecoded next to body: a JSON
// body as its JSON value, text as a string, nothing for binary; -o table
// shows the decoded body.
func TestEventsBodyDecoded(t *testing.T) {
	eh := newEventHub(t)
	eh.post(t, []byte("{\n \"t\": 21.5}"))
	eh.post(t, []byte("héllo"))
	eh.post(t, []byte{0xff, 0x00, 0x01})
	var out, errs bytes.Buffer
	if code := cli.Main([]string{"events"}, commands, eh.env(&out, &errs)); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	wants := []string{`"bodyDecoded":{"t":21.5}}`, `"bodyDecoded":"héllo"}`, `"body":"/wAB"}`}
	if len(lines) != 3 {
		t.Fatalf("printed\n%s", out.String())
	}
	for i, w := range wants {
		if !strings.HasSuffix(lines[i], w) {
			t.Errorf("event %d: %s\nwant it to end with %s", i+1, lines[i], w)
		}
	}
	out.Reset()
	if code := cli.Main([]string{"events", "-o", "table"}, commands, eh.env(&out, &errs)); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	for _, w := range []string{`{"t":21.5}`, `héllo`, `/wAB`} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("table\n%s\nwant %s", out.String(), w)
		}
	}
}

// lineWriter signals each write on a channel.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wrote chan struct{}
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	select {
	case w.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

// TestEventsFollowAtOnce: an event posted while `events --follow` waits
// is printed at once: the long poll answers when it is appended, and the
// next poll starts without a pause. Measured from the post to the line.
func TestEventsFollowAtOnce(t *testing.T) {
	eh := newEventHub(t)
	eh.post(t, []byte("old"))
	out := &lineWriter{wrote: make(chan struct{}, 1)}
	var errs bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Main([]string{"events", "--follow", "--limit", "3"}, commands, eh.env(out, &errs))
	}()
	const limit = 500 * time.Millisecond
	for i := 0; i < 2; i++ {
		// Wait (with a deadline) until the CLI's long poll is waiting at
		// the hub with nothing to answer, then post.
		deadline := time.Now().Add(5 * time.Second)
		for eh.polling.Load() == 0 || len(out.wrote) > 0 {
			select {
			case <-out.wrote:
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("the CLI is not long-polling the hub; stderr: %s", errs.String())
			}
			time.Sleep(time.Millisecond)
		}
		start := time.Now()
		eh.post(t, []byte("new"))
		select {
		case <-out.wrote:
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d not printed within 5 s of its post", i+1)
		}
		took := time.Since(start)
		t.Logf("event %d printed %v after it was posted", i+1, took)
		if took > limit {
			t.Errorf("event %d printed %v after it was posted, want under %v", i+1, took, limit)
		}
	}
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	out.mu.Lock()
	defer out.mu.Unlock()
	if n := strings.Count(out.buf.String(), "\n"); n != 3 {
		t.Errorf("printed %d events, want 3:\n%s", n, out.buf.String())
	}
}
