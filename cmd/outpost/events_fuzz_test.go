package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
)

// FuzzEventBody: whatever a device sent, `outpost events` prints one line of
// valid JSON whose body is unchanged and whose bodyDecoded is the body as
// JSON (compacted) or as text, or absent for bytes that are neither; the
// table shows it on one line.
func FuzzEventBody(f *testing.F) {
	f.Add([]byte(`{"t": 21.5}`))
	f.Add([]byte("plain text\nwith a newline"))
	f.Add([]byte{0xff, 0xfe, 0x00})
	f.Add([]byte(`"a JSON string"`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		b64 := base64.StdEncoding.EncodeToString(body)
		raw, _ := json.Marshal(map[string]any{"seq": 1, "deviceId": "d", "body": b64})
		e := hubclient.Event{Seq: 1, DeviceID: "d", BodyBase64: b64, Raw: raw}
		var out bytes.Buffer
		h := &hubCall{env: cli.Env{Stdout: &out}}
		if err := printEventJSON(h, e); err != nil {
			t.Fatalf("printEventJSON(%q): %v", body, err)
		}
		line := out.Bytes()
		if bytes.Count(line, []byte("\n")) != 1 || !json.Valid(line) {
			t.Fatalf("not one line of JSON for %q: %q", body, line)
		}
		var got struct {
			Body        string          `json:"body"`
			BodyDecoded json.RawMessage `json:"bodyDecoded"`
		}
		if err := json.Unmarshal(line, &got); err != nil || got.Body != b64 {
			t.Fatalf("body %q came back as %q (%v)", b64, got.Body, err)
		}
		checkDecoded(t, body, got.BodyDecoded)
		out.Reset()
		if err := printEventRow(h, e); err != nil || bytes.Count(out.Bytes(), []byte("\n")) != 1 {
			t.Fatalf("table row for %q: %q (%v)", body, out.Bytes(), err)
		}
	})
}

func checkDecoded(t *testing.T, body []byte, decoded json.RawMessage) {
	t.Helper()
	switch {
	case !utf8.Valid(body):
		if decoded != nil {
			t.Fatalf("bodyDecoded %s for bytes that are not UTF-8", decoded)
		}
	case json.Valid(body):
		var want bytes.Buffer
		_ = json.Compact(&want, body)
		if !bytes.Equal(decoded, want.Bytes()) {
			t.Fatalf("bodyDecoded %s, want the JSON %s", decoded, want.Bytes())
		}
	default:
		var s string
		if err := json.Unmarshal(decoded, &s); err != nil || s != strings.ToValidUTF8(string(body), "") {
			t.Fatalf("bodyDecoded %s, want the text %q", decoded, body)
		}
	}
}
