package protocol

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzReadError: any answer a peer sends reads as an error with a one-line
// message; an envelope written by WriteError reads back as written.
func FuzzReadError(f *testing.F) {
	f.Add(404, []byte(`{"code":"NotFound","message":"no device \"x\""}`+"\n"))
	f.Add(502, []byte("<html>\n<body>Bad Gateway</body></html>"))
	f.Add(400, []byte(`{"code":400,"message":"numeric code"}`))
	f.Add(500, []byte{})
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		e := ReadError(status, body)
		if e == nil || e.Status != status || e.Error() == "" {
			t.Fatalf("ReadError(%d, %q) = %+v", status, body, e)
		}
		if strings.ContainsAny(e.Message, "\n\r") {
			t.Fatalf("message spans lines: %q", e.Message)
		}
		var j struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		d := json.NewDecoder(bytes.NewReader(body))
		d.DisallowUnknownFields()
		envelope := d.Decode(&j) == nil && len(bytes.Trim(body[d.InputOffset():], " \t\r\n")) == 0 // one object, as WriteError writes; JSON's whitespace only
		code := strings.TrimSpace(j.Code)                                                          // ReadError trims it; a blank one is no code
		if envelope && code != "" && j.Message == strings.Join(strings.Fields(j.Message), " ") && e.Code != code {
			t.Fatalf("envelope %q read as code %q", body, e.Code)
		}
	})
}

// FuzzImageFormat: any head is named by at most one format, and more bytes
// after a recognised head never change the answer.
func FuzzImageFormat(f *testing.F) {
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Add([]byte("#!/bin/sh\necho hi\n"))
	f.Add([]byte{0x1f, 0x8b, 8, 0})
	f.Add([]byte("PK\x03\x04rest"))
	f.Add(append(make([]byte, 257), []byte("ustar\x0000")...))
	f.Add([]byte("hello"))
	f.Fuzz(func(t *testing.T, head []byte) {
		got := ImageFormat(head)
		switch got {
		case "", ImageELF, ImageScript, ImageGzip, ImageZip, ImageTar:
		default:
			t.Fatalf("ImageFormat(%q) = %q, not a known format", head, got)
		}
		if got != "" && ImageFormat(append(bytes.Clone(head), "trailing bytes"...)) != got {
			t.Fatalf("ImageFormat changed with more bytes after %q", head)
		}
	})
}
