package hub

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/outpost-edge/outpost/sync/hub/query"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// IoT Hub's jobs (/jobs/v2): a twin update or a direct method, run at a
// start time on every device a query condition matches. The API here
// creates, reads, lists and cancels them; jobrun.go runs them; jobfsm.go
// keeps them in the state machine.

// JobRequest is the body of PUT /jobs/v2/{id}, as the service SDKs send it.
type JobRequest struct {
	JobID                     string                  `json:"jobId"`
	Type                      string                  `json:"type"`
	QueryCondition            string                  `json:"queryCondition"`
	StartTime                 *string                 `json:"startTime"` // ISO-8601; null or absent: now
	MaxExecutionTimeInSeconds int64                   `json:"maxExecutionTimeInSeconds"`
	UpdateTwin                json.RawMessage         `json:"updateTwin"`
	CloudToDeviceMethod       *protocol.MethodRequest `json:"cloudToDeviceMethod"`
}

// JobJSON is a job as IoT Hub's REST API shows it (JobResponse).
type JobJSON struct {
	JobID                     string                  `json:"jobId"`
	QueryCondition            string                  `json:"queryCondition"`
	CreatedTime               string                  `json:"createdTime"`
	StartTime                 string                  `json:"startTime"`
	EndTime                   string                  `json:"endTime,omitempty"`
	MaxExecutionTimeInSeconds int64                   `json:"maxExecutionTimeInSeconds"`
	Type                      string                  `json:"type"`
	CloudToDeviceMethod       *protocol.MethodRequest `json:"cloudToDeviceMethod,omitempty"`
	UpdateTwin                json.RawMessage         `json:"updateTwin,omitempty"`
	Status                    string                  `json:"status"`
	FailureReason             string                  `json:"failureReason,omitempty"`
	StatusMessage             string                  `json:"statusMessage,omitempty"`
	DeviceJobStatistics       JobStatistics           `json:"deviceJobStatistics"`
}

// JobStatistics counts a job's devices by status.
type JobStatistics struct {
	DeviceCount    int64 `json:"deviceCount"`
	FailedCount    int64 `json:"failedCount"`
	SucceededCount int64 `json:"succeededCount"`
	RunningCount   int64 `json:"runningCount"`
	PendingCount   int64 `json:"pendingCount"`
}

func (j jobRecord) JSON() JobJSON {
	out := JobJSON{JobID: j.ID, QueryCondition: j.Condition, CreatedTime: isoMillis(j.Created), StartTime: isoMillis(j.Start),
		MaxExecutionTimeInSeconds: j.MaxSeconds, Type: j.Type, UpdateTwin: j.Twin, Status: j.Status,
		FailureReason: j.Failure, StatusMessage: j.Message,
		DeviceJobStatistics: JobStatistics{DeviceCount: j.Stats.Devices, FailedCount: j.Stats.Failed,
			SucceededCount: j.Stats.Succeeded, RunningCount: j.Stats.Running, PendingCount: j.Stats.Pending}}
	if j.End != 0 {
		out.EndTime = isoMillis(j.End)
	}
	if m := j.Method; m != nil {
		out.CloudToDeviceMethod = &protocol.MethodRequest{MethodName: m.Name, Payload: m.Payload, ResponseTimout: m.ResponseTimeout, ConnectTimeout: m.ConnectTimeout}
		if len(m.Payload) == 0 {
			out.CloudToDeviceMethod.Payload = json.RawMessage("null")
		}
	}
	return out
}

// PutJob creates a job (ErrConflict when its id exists, ErrFull with
// maxActiveJobs queued or running, ErrInvalid for a condition that does
// not parse, naming its position).
func (h *Hub) PutJob(ctx context.Context, id string, req JobRequest) (JobJSON, error) {
	c, err := jobCommand(id, req, h.opts.Now())
	if err != nil {
		return JobJSON{}, err
	}
	if err := h.apply(ctx, c); err != nil {
		return JobJSON{}, err
	}
	h.kickJobs()
	return h.Job(id)
}

// jobCommand checks a request and makes its putJob.
func jobCommand(id string, req JobRequest, now time.Time) (putJob, error) {
	if req.JobID != "" && req.JobID != id {
		return putJob{}, fmt.Errorf("%w: jobId %q in the body differs from %q in the path", ErrInvalid, req.JobID, id)
	}
	if err := checkJobID(id); err != nil {
		return putJob{}, err
	}
	if _, err := query.ParseCondition(req.QueryCondition); err != nil {
		return putJob{}, fmt.Errorf("%w: queryCondition: %v", ErrInvalid, err)
	}
	c := putJob{ID: id, Type: req.Type, Condition: req.QueryCondition, MaxSeconds: req.MaxExecutionTimeInSeconds}
	if c.MaxSeconds < 0 {
		return putJob{}, fmt.Errorf("%w: maxExecutionTimeInSeconds %d: want a positive number of seconds", ErrInvalid, c.MaxSeconds)
	}
	if req.StartTime != nil && *req.StartTime != "" {
		t, err := time.Parse(time.RFC3339Nano, *req.StartTime)
		if err != nil {
			return putJob{}, fmt.Errorf("%w: startTime %q: want an ISO-8601 time like 2026-03-01T12:00:00Z", ErrInvalid, *req.StartTime)
		}
		c.Start = max(t.UnixMilli(), 1)
	}
	var err error
	switch req.Type {
	case jobUpdateTwin:
		c.Twin, err = jobTwinPatch(req.UpdateTwin)
	case jobDeviceMethod:
		c.Method, err = jobMethodOf(req.CloudToDeviceMethod)
	default:
		err = fmt.Errorf("%w: type %q: want scheduleUpdateTwin or scheduleDeviceMethod", ErrInvalid, req.Type)
	}
	return c, err
}

// jobTwinPatch is a job's updateTwin as a service PATCH body: its tags and
// desired properties (its etag and the rest are dropped).
func jobTwinPatch(raw json.RawMessage) (json.RawMessage, error) {
	var doc struct {
		Tags       json.RawMessage `json:"tags"`
		Properties *struct {
			Desired  json.RawMessage `json:"desired"`
			Reported json.RawMessage `json:"reported"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("%w: updateTwin: want {\"tags\":{…},\"properties\":{\"desired\":{…}}}: %v", ErrInvalid, err)
	}
	patch := map[string]any{}
	if present(doc.Tags) {
		patch["tags"] = doc.Tags
	}
	if p := doc.Properties; p != nil {
		if present(p.Reported) {
			return nil, fmt.Errorf("%w: updateTwin: properties.reported is written by the device, not by a job", ErrInvalid)
		}
		if present(p.Desired) {
			patch["properties"] = map[string]any{"desired": p.Desired}
		}
	}
	if len(patch) == 0 {
		return nil, fmt.Errorf("%w: updateTwin changes nothing: give tags or properties.desired", ErrInvalid)
	}
	return json.Marshal(patch)
}

func present(raw json.RawMessage) bool { return len(raw) > 0 && !bytes.Equal(raw, []byte("null")) }

func jobMethodOf(m *protocol.MethodRequest) (*jobMethod, error) {
	if m == nil || m.MethodName == "" {
		return nil, fmt.Errorf("%w: cloudToDeviceMethod: want {\"methodName\",\"payload\",\"responseTimeoutInSeconds\"}", ErrInvalid)
	}
	if m.ResponseTimout < 0 || m.ResponseTimout > 300 || m.ConnectTimeout < 0 || m.ConnectTimeout > 300 {
		return nil, fmt.Errorf("%w: cloudToDeviceMethod: responseTimeoutInSeconds and connectTimeoutInSeconds must be within 0–300", ErrInvalid)
	}
	if len(m.Payload) > protocol.MaxMethodPayload {
		return nil, fmt.Errorf("%w: cloudToDeviceMethod: the payload is over %d bytes", protocol.ErrTooLarge, protocol.MaxMethodPayload)
	}
	out := &jobMethod{Name: m.MethodName, ResponseTimeout: m.ResponseTimout, ConnectTimeout: m.ConnectTimeout}
	if present(m.Payload) {
		out.Payload = m.Payload
	}
	return out, nil
}

// Job reads one job.
func (h *Hub) Job(id string) (JobJSON, error) {
	j, ok, err := h.fsm.job(id)
	if err != nil {
		return JobJSON{}, err
	}
	if !ok {
		return JobJSON{}, fmt.Errorf("%w: job %q", ErrNotFound, id)
	}
	return j.JSON(), nil
}

// CancelJob cancels a job that has not finished (a finished one stays as
// it is) and answers it.
func (h *Hub) CancelJob(ctx context.Context, id string) (JobJSON, error) {
	if err := h.apply(ctx, cancelJob{ID: id}); err != nil {
		return JobJSON{}, err
	}
	h.runs.cancel(id)
	return h.Job(id)
}

// JobFilter selects jobs for Jobs: by type and status ("" for any).
type JobFilter struct{ Type, Status string }

// Jobs lists one page of the jobs the filter selects, by id; the
// continuation ("" on the last page) resumes after the last one.
func (h *Hub) Jobs(filter JobFilter, page query.Page) ([]JobJSON, string, error) {
	after := ""
	if page.Continuation != "" {
		b, err := base64.RawURLEncoding.DecodeString(page.Continuation)
		if err != nil || len(b) == 0 {
			return nil, "", fmt.Errorf("%w: x-ms-continuation %q is not one this hub gave; list again from the start", ErrInvalid, page.Continuation)
		}
		after = string(b)
	}
	size := page.Max
	if size <= 0 {
		size = query.DefaultPageSize
	}
	size = min(size, query.MaxPageSize)
	jobs, err := h.fsm.jobs()
	if err != nil {
		return nil, "", err
	}
	out := []JobJSON{}
	for _, j := range jobs {
		if j.ID <= after || (filter.Type != "" && j.Type != filter.Type) || (filter.Status != "" && j.Status != filter.Status) {
			continue
		}
		if len(out) == size {
			return out, base64.RawURLEncoding.EncodeToString([]byte(out[size-1].JobID)), nil
		}
		out = append(out, j.JSON())
	}
	return out, "", nil
}

func (h *Hub) putJob(w http.ResponseWriter, r *http.Request) error {
	var req JobRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		return fmt.Errorf("%w: want a job as JSON {\"jobId\",\"type\",\"queryCondition\",\"startTime\",\"maxExecutionTimeInSeconds\",\"updateTwin\"|\"cloudToDeviceMethod\"}: %v", ErrInvalid, err)
	}
	j, err := h.PutJob(r.Context(), r.PathValue("id"), req)
	if err != nil {
		return err
	}
	writeJSON(w, 200, j)
	return nil
}

func (h *Hub) getJob(w http.ResponseWriter, r *http.Request) error {
	j, err := h.Job(r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, 200, j)
	return nil
}

func (h *Hub) cancelJob(w http.ResponseWriter, r *http.Request) error {
	j, err := h.CancelJob(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, 200, j)
	return nil
}

// queryJobs is GET /jobs/v2/query?jobType=…&jobStatus=…, paged as
// /devices/query is.
func (h *Hub) queryJobs(w http.ResponseWriter, r *http.Request) error {
	page, err := pageOf(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	jobs, next, err := h.Jobs(JobFilter{Type: q.Get("jobType"), Status: q.Get("jobStatus")}, page)
	if err != nil {
		return err
	}
	if next != "" {
		w.Header().Set("x-ms-continuation", next)
	}
	writeJSON(w, 200, jobs)
	return nil
}
