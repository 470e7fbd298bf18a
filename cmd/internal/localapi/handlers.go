package localapi

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/supervisor"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// C2DTTL is how long a cloud-to-device message sent through the local API
// waits for its device: as long as the hub keeps them (IoT Hub's longest
// retention).
const C2DTTL = protocol.C2DTTL

// maxMethodBody bounds a direct method request: its payload and the JSON
// around it.
const maxMethodBody = protocol.MaxMethodPayload + 4<<10

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) status(w http.ResponseWriter, _ *http.Request) {
	st := s.opts.Status()
	st.Queues = HideIdleLanes(st.Queues)
	writeJSON(w, http.StatusOK, st)
}

func targetID(r *http.Request) string {
	id := r.PathValue("d")
	if m := r.PathValue("m"); m != "" {
		id += "/" + m
	}
	return id
}

func (s *Server) twin(w http.ResponseWriter, r *http.Request) {
	v, err := s.opts.Twin(targetID(r))
	switch {
	case errors.Is(err, twin.ErrNotFound):
		writeError(w, http.StatusNotFound, "NotFound", err.Error())
	case err != nil:
		writeError(w, http.StatusBadRequest, "BadRequest", err.Error())
	default:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(v)
	}
}

// c2d queues a cloud-to-device message for a leaf device this edge knows,
// as the hub's REST API does; the body is the payload.
func (s *Server) c2d(w http.ResponseWriter, r *http.Request) {
	d := r.PathValue("d")
	if !s.opts.KnownDevice(d) {
		writeError(w, http.StatusNotFound, "DeviceNotFound",
			fmt.Sprintf("no leaf device %q in this edge's identity cache; create it at the hub as a child of this edge (or list it in --identities)", d))
		return
	}
	m, err := protocol.C2DMessage(r, d)
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "TooLarge", err.Error())
		return
	}
	m.TTL = C2DTTL
	if err := s.opts.SendC2D(r.Context(), d, m); err != nil {
		writeError(w, http.StatusInternalServerError, "Internal", err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// method invokes a direct method on a connected device or module:
// {"methodName","payload","responseTimeoutInSeconds"} → {"status","payload"};
// 404 when the target is not connected, 504 when it does not answer.
func (s *Server) method(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(handlerDeadline))
	req, err := protocol.ReadMethodRequest(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	// The answer may take the method's whole timeout, and not longer.
	_ = rc.SetWriteDeadline(time.Now().Add(req.Timeout() + handlerDeadline))
	res := s.opts.Invoke(r.Context(), targetID(r), req.MethodName, req.Payload, req.Timeout())
	if res.Error != "" { // the call did not reach an answer: 404, 504 or 500
		code := map[int]string{404: "DeviceNotOnline", 504: "GatewayTimeout"}[res.Status]
		if code == "" {
			code = "Internal"
		}
		writeError(w, res.Status, code, res.Error)
		return
	}
	writeJSON(w, http.StatusOK, protocol.MethodAnswer(res.Status, res.Payload))
}

// logs streams a module's output: GET /modules/{m}/logs?tail=N&follow=true.
func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	tail := 0
	if t := r.URL.Query().Get("tail"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "BadRequest", "tail must be a number of lines")
			return
		}
		tail = n
	}
	follow := r.URL.Query().Get("follow") == "true"
	if !follow {
		rc := http.NewResponseController(w)
		_ = rc.SetWriteDeadline(time.Now().Add(handlerDeadline))
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.opts.Logs(r.Context(), r.PathValue("m"), tail, follow, flushWriter{w}); err != nil {
		if errors.Is(err, supervisor.ErrNoModule) {
			writeError(w, http.StatusNotFound, "NotFound", err.Error()+" in the deployment")
			return
		}
		s.opts.Logger.Debug("log stream ended", "module", r.PathValue("m"), "err", err)
	}
}

type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}
