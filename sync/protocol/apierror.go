package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// APIError is the error envelope of every HTTP API of Outpost — the hub's
// REST API and link, the edge's local API — as IoT Hub's:
// {"code":"DeviceNotFound","message":"…"} with the HTTP status. Servers
// write it with WriteError and clients read it with ReadError; nothing else
// spells the shape out.
type APIError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`    // e.g. NotFound, Unauthorized, QuotaExceeded
	Message string `json:"message"` // what is wrong and what to do
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("%d %s", e.Status, e.Code)
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// WriteError answers with status and the envelope {code, message},
// preceded by the form the Azure IoT service SDKs parse into typed errors,
// "Message":"ErrorCode:<code>;<message>" (a reader that matches keys
// without case, as ReadError does, takes the later, lower-case message).
func WriteError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		SDK     string `json:"Message"`
		Code    string `json:"code"`
		Message string `json:"message"`
	}{"ErrorCode:" + code + ";" + message, code, message})
}

// maxErrorExcerpt bounds the part of a body that is not the envelope (a
// proxy's error page, another server) that ReadError keeps.
const maxErrorExcerpt = 200

// ReadError reads an error answer with status and body. A body that is not
// the envelope yields the status text as the code and a short excerpt of
// the body, on one line, as the message; a numeric code (other servers
// send them) is taken as text.
func ReadError(status int, body []byte) *APIError {
	e := &APIError{Status: status}
	var j struct {
		Code    any    `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &j) == nil {
		if j.Code != nil {
			e.Code = strings.TrimSpace(fmt.Sprint(j.Code))
		}
		e.Message = oneLine(j.Message)
	} else {
		e.Message = Excerpt(body)
	}
	if e.Code == "" {
		e.Code = http.StatusText(status)
	}
	if e.Code == "" {
		e.Code = "status " + strconv.Itoa(status)
	}
	return e
}

// Excerpt is the start of a body that is not what was expected, on one
// line and valid UTF-8, for an error message.
func Excerpt(b []byte) string {
	s := oneLine(string(bytes.ToValidUTF8(bytes.TrimSpace(b), []byte("?"))))
	if len(s) > maxErrorExcerpt {
		s = strings.ToValidUTF8(s[:maxErrorExcerpt], "") + "…"
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
