package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/store/queue"
)

// The IoT Hub REST shapes that both the hub and the edge's local API accept.

// MaxC2D is the largest cloud-to-device body accepted.
const MaxC2D = 256 << 10

// C2DTTL is how long a cloud-to-device message waits for its device
// (IoT Hub's longest retention), at the hub and at the edge's local API.
const C2DTTL = 48 * time.Hour

// ErrTooLarge is returned for a body over its limit.
var ErrTooLarge = errors.New("body too large")

// C2DMessage reads a cloud-to-device request: the body is the payload, and
// the iothub-messageid, iothub-correlationid and iothub-app-<name> headers
// carry its properties.
func C2DMessage(r *http.Request, device string) (queue.Message, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxC2D+1))
	if err != nil {
		return queue.Message{}, err
	}
	if len(body) > MaxC2D {
		return queue.Message{}, fmt.Errorf("%w: a cloud-to-device message is at most %d bytes", ErrTooLarge, MaxC2D)
	}
	m := queue.Message{ID: r.Header.Get("iothub-messageid"), Body: body, Props: map[string]string{},
		Sys: map[string]string{"to": "/devices/" + device + "/messages/deviceBound"}}
	if cid := r.Header.Get("iothub-correlationid"); cid != "" {
		m.Sys["correlationId"] = cid
	}
	for k, v := range r.Header {
		if name, ok := strings.CutPrefix(strings.ToLower(k), "iothub-app-"); ok && len(v) > 0 {
			m.Props[name] = v[0]
		}
	}
	return m, nil
}

// MethodRequest is a direct method invocation as IoT Hub's REST API takes it.
type MethodRequest struct {
	MethodName     string          `json:"methodName"`
	Payload        json.RawMessage `json:"payload"`
	ResponseTimout int             `json:"responseTimeoutInSeconds"`
	ConnectTimeout int             `json:"connectTimeoutInSeconds"`
}

// MaxMethodPayload bounds a method request and its answer.
const MaxMethodPayload = 128 << 10

// ReadMethodRequest decodes and checks a method request.
func ReadMethodRequest(r io.Reader) (MethodRequest, error) {
	var req MethodRequest
	err := json.NewDecoder(io.LimitReader(r, MaxMethodPayload+1024)).Decode(&req)
	if err != nil || req.MethodName == "" {
		return req, errors.New(`want {"methodName", "payload", "responseTimeoutInSeconds", "connectTimeoutInSeconds"}`)
	}
	if req.ResponseTimout < 0 || req.ResponseTimout > 300 || req.ConnectTimeout < 0 || req.ConnectTimeout > 300 {
		return req, errors.New("responseTimeoutInSeconds and connectTimeoutInSeconds must be within 0–300")
	}
	return req, nil
}

// Timeout is how long to wait for the answer (default 30 s).
func (m MethodRequest) Timeout() time.Duration {
	if m.ResponseTimout == 0 {
		return 30 * time.Second
	}
	return time.Duration(m.ResponseTimout) * time.Second
}

// MethodAnswer renders a method's answer as {"status","payload"}: a payload
// that is not JSON is returned as a JSON string.
func MethodAnswer(status int, payload []byte) map[string]any {
	p := json.RawMessage(payload)
	if len(p) == 0 {
		p = json.RawMessage("null")
	} else if !json.Valid(p) {
		p, _ = json.Marshal(string(payload))
	}
	return map[string]any{"status": status, "payload": p}
}
