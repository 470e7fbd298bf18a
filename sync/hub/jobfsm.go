package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/outpost-edge/outpost/store/kv"
)

// Jobs (IoT Hub's /jobs/v2, jobs.go) in the state machine: one record per
// job, and one per device a job runs on, keyed job id '/' device id so the
// per-device results list in the key order FROM devices.jobs pages by.
// The runner (jobrun.go) decides; these commands record its decisions.

var (
	jobPrefix       = []byte{kv.PrefixMeta, 'h', 'j'}
	deviceJobPrefix = []byte{kv.PrefixMeta, 'h', 'k'}
)

func jobKey(id string) []byte { return append(slices.Clip(jobPrefix), id...) }

func deviceJobKey(job, device string) []byte {
	return append(append(append(slices.Clip(deviceJobPrefix), job...), '/'), device...)
}

// Job types, and the statuses of jobs and of a job's devices, as IoT Hub
// names them.
const (
	jobUpdateTwin   = "scheduleUpdateTwin"
	jobDeviceMethod = "scheduleDeviceMethod"

	statusQueued    = "queued"
	statusPending   = "pending" // a device not run yet
	statusRunning   = "running"
	statusCompleted = "completed"
	statusFailed    = "failed"
	statusCancelled = "cancelled"
)

// Bounds of jobs.
const (
	maxActiveJobs       = 100    // queued or running at once
	maxJobDevices       = 100000 // devices one job runs on
	defaultJobMaxSecond = 3600   // maxExecutionTimeInSeconds when absent
)

// errJobExists: a job id taken (409 JobAlreadyExists).
var errJobExists = fmt.Errorf("%w: job already exists", ErrConflict)

// jobRecord is one job in the state machine.
type jobRecord struct {
	ID         string          `cbor:"1,keyasint"`
	Type       string          `cbor:"2,keyasint"`
	Condition  string          `cbor:"3,keyasint,omitempty"`
	Created    int64           `cbor:"4,keyasint"`           // unix ms
	Start      int64           `cbor:"5,keyasint"`           // when it may start
	Started    int64           `cbor:"6,keyasint,omitempty"` // when it began running
	End        int64           `cbor:"7,keyasint,omitempty"`
	MaxSeconds int64           `cbor:"8,keyasint"`
	Twin       json.RawMessage `cbor:"9,keyasint,omitempty"` // the patch, without etag
	Method     *jobMethod      `cbor:"10,keyasint,omitempty"`
	Status     string          `cbor:"11,keyasint"`
	Failure    string          `cbor:"12,keyasint,omitempty"`
	Message    string          `cbor:"13,keyasint,omitempty"`
	Stats      jobStats        `cbor:"14,keyasint"`
}

// jobMethod is the direct method a scheduleDeviceMethod job calls.
type jobMethod struct {
	Name            string          `cbor:"1,keyasint"`
	Payload         json.RawMessage `cbor:"2,keyasint,omitempty"`
	ResponseTimeout int             `cbor:"3,keyasint,omitempty"`
	ConnectTimeout  int             `cbor:"4,keyasint,omitempty"`
}

// jobStats counts a job's devices by the status they show.
type jobStats struct {
	Devices   int64 `cbor:"1,keyasint,omitempty"`
	Failed    int64 `cbor:"2,keyasint,omitempty"`
	Succeeded int64 `cbor:"3,keyasint,omitempty"`
	Running   int64 `cbor:"4,keyasint,omitempty"`
	Pending   int64 `cbor:"5,keyasint,omitempty"`
}

// count is the counter of a shown device status (nil: cancelled).
func (s *jobStats) count(status string) *int64 {
	switch status {
	case statusPending:
		return &s.Pending
	case statusRunning:
		return &s.Running
	case statusCompleted:
		return &s.Succeeded
	case statusFailed:
		return &s.Failed
	}
	return nil
}

func (j *jobRecord) finished() bool {
	return j.Status == statusCompleted || j.Status == statusFailed || j.Status == statusCancelled
}

// deviceJob is one device's record in a job.
type deviceJob struct {
	Status       string          `cbor:"1,keyasint"` // pending, running, completed, failed
	Created      int64           `cbor:"2,keyasint"`
	Start        int64           `cbor:"3,keyasint,omitempty"`
	End          int64           `cbor:"4,keyasint,omitempty"`
	Updated      int64           `cbor:"5,keyasint"`
	MethodStatus int             `cbor:"6,keyasint,omitempty"`
	Payload      json.RawMessage `cbor:"7,keyasint,omitempty"`
	ErrCode      string          `cbor:"8,keyasint,omitempty"`
	ErrDesc      string          `cbor:"9,keyasint,omitempty"`
}

// shownStatus is what a device's record shows in its job: a device not
// done when its job was cancelled is cancelled, when it failed, failed.
func shownStatus(raw, job string) string {
	if raw == statusPending || raw == statusRunning {
		switch job {
		case statusCancelled, statusFailed:
			return job
		}
	}
	return raw
}

// putJob creates a job, queued until Start (0: the command's time).
type putJob struct {
	ID         string          `cbor:"1,keyasint"`
	Type       string          `cbor:"2,keyasint"`
	Condition  string          `cbor:"3,keyasint,omitempty"`
	Start      int64           `cbor:"4,keyasint,omitempty"`
	MaxSeconds int64           `cbor:"5,keyasint,omitempty"`
	Twin       json.RawMessage `cbor:"6,keyasint,omitempty"`
	Method     *jobMethod      `cbor:"7,keyasint,omitempty"`
}

// jobProgress records a batch of a job's steps: its devices' new statuses
// (pending while the runner lists them, running when it starts them,
// then completed or failed with their outcome) and, with Status, the
// job's next status (running, completed or failed).
type jobProgress struct {
	ID      string         `cbor:"1,keyasint"`
	Devices []deviceResult `cbor:"2,keyasint,omitempty"`
	Status  string         `cbor:"3,keyasint,omitempty"`
	Failure string         `cbor:"4,keyasint,omitempty"` // failureReason, with failed
	Message string         `cbor:"5,keyasint,omitempty"` // statusMessage
}

// deviceResult is one device's step in a jobProgress.
type deviceResult struct {
	Device       string          `cbor:"1,keyasint"`
	Status       string          `cbor:"2,keyasint"`
	MethodStatus int             `cbor:"3,keyasint,omitempty"`
	Payload      json.RawMessage `cbor:"4,keyasint,omitempty"`
	ErrCode      string          `cbor:"5,keyasint,omitempty"`
	ErrDesc      string          `cbor:"6,keyasint,omitempty"`
}

// cancelJob cancels a job not finished yet: its devices not done show
// cancelled.
type cancelJob struct {
	ID string `cbor:"1,keyasint"`
}

// expireJobs removes finished jobs that ended before Before, at most Max
// records at once (a job's devices first, then the job); the answer is
// the number of records removed.
type expireJobs struct {
	Before int64 `cbor:"1,keyasint"`
	Max    int   `cbor:"2,keyasint"`
}

func (f *FSM) putJobLocked(ctx context.Context, c putJob) error {
	if err := checkJobID(c.ID); err != nil {
		return err
	}
	switch {
	case c.Type == jobUpdateTwin && len(c.Twin) > 0 && c.Method == nil:
	case c.Type == jobDeviceMethod && c.Method != nil && c.Method.Name != "" && len(c.Twin) == 0:
	default:
		return fmt.Errorf("%w: a job is scheduleUpdateTwin with updateTwin or scheduleDeviceMethod with cloudToDeviceMethod", ErrInvalid)
	}
	jobs, err := f.jobs()
	if err != nil {
		return err
	}
	active := 0
	for _, j := range jobs {
		if j.ID == c.ID {
			return fmt.Errorf("%w: %q (created %s, %s); pick another jobId", errJobExists, c.ID, isoMillis(j.Created), j.Status)
		}
		if !j.finished() {
			active++
		}
	}
	if active >= maxActiveJobs {
		return fmt.Errorf("%w: %d jobs are queued or running, the most a hub runs at once; cancel one or wait until one finishes", ErrFull, active)
	}
	at := f.at.Load()
	j := jobRecord{ID: c.ID, Type: c.Type, Condition: c.Condition, Created: at, Start: c.Start, MaxSeconds: c.MaxSeconds,
		Twin: c.Twin, Method: c.Method, Status: statusQueued}
	if j.Start == 0 {
		j.Start = at
	}
	if j.MaxSeconds <= 0 {
		j.MaxSeconds = defaultJobMaxSecond
	}
	return f.putJobRecord(ctx, j)
}

// checkJobID refuses ids the API could not address: empty, too long, a
// '/' (the device records' separator) or "query" (GET /jobs/v2/query).
func checkJobID(id string) error {
	if id == "" || len(id) > 128 || strings.ContainsAny(id, "/?#") || id == "query" {
		return fmt.Errorf("%w: job id %q: want 1–128 characters without '/', '?' or '#', and not \"query\"", ErrInvalid, id)
	}
	return nil
}

func (f *FSM) putJobRecord(ctx context.Context, j jobRecord, ops ...kv.Op) error {
	v, err := kv.Marshal(j)
	if err != nil {
		return err
	}
	return f.db.Commit(ctx, append(ops, kv.Set(jobKey(j.ID), v))...)
}

func (f *FSM) jobProgressLocked(ctx context.Context, c jobProgress) error {
	j, ok, err := f.job(c.ID)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: job %q", ErrNotFound, c.ID)
	}
	at := f.at.Load()
	written := make(map[string]deviceJob, len(c.Devices))
	var ops []kv.Op
	for _, d := range c.Devices {
		old, exists := written[d.Device]
		if !exists {
			if old, exists, err = f.deviceJob(c.ID, d.Device); err != nil {
				return err
			}
		}
		rec, ok := stepDevice(&j, old, exists, d, at)
		if !ok {
			continue
		}
		v, err := kv.Marshal(rec)
		if err != nil {
			return err
		}
		written[d.Device] = rec
		ops = append(ops, kv.Set(deviceJobKey(c.ID, d.Device), v))
	}
	if c.Status != "" {
		advanceJob(&j, c, at)
	}
	return f.putJobRecord(ctx, j, ops...)
}

// stepDevice applies one device's step to its record and the job's
// counts; false when the step does not apply (a device listed twice, a
// result for a device not started, a step after its result).
func stepDevice(j *jobRecord, old deviceJob, exists bool, d deviceResult, at int64) (deviceJob, bool) {
	switch d.Status {
	case statusPending:
		if exists || j.Status != statusQueued || j.Stats.Devices >= maxJobDevices || d.Device == "" {
			return old, false
		}
		j.Stats.Devices++
		j.Stats.Pending++
		return deviceJob{Status: statusPending, Created: at, Updated: at}, true
	case statusRunning, statusCompleted, statusFailed:
		if !exists || (old.Status != statusPending && old.Status != statusRunning) {
			return old, false
		}
		if d.Status == statusRunning && (old.Status == statusRunning || j.finished()) {
			return old, false
		}
	default:
		return old, false
	}
	if n := j.Stats.count(shownStatus(old.Status, j.Status)); n != nil {
		*n--
	}
	if n := j.Stats.count(shownStatus(d.Status, j.Status)); n != nil {
		*n++
	}
	rec := old
	rec.Status, rec.Updated = d.Status, at
	if d.Status == statusRunning {
		rec.Start = at
		return rec, true
	}
	if rec.Start == 0 {
		rec.Start = at
	}
	rec.End, rec.MethodStatus, rec.Payload, rec.ErrCode, rec.ErrDesc = at, d.MethodStatus, d.Payload, d.ErrCode, d.ErrDesc
	return rec, true
}

// advanceJob moves a job to c.Status when that is a step forward:
// queued → running, running → completed (all devices done), queued or
// running → failed (the devices not done show failed).
func advanceJob(j *jobRecord, c jobProgress, at int64) {
	switch {
	case c.Status == statusRunning && j.Status == statusQueued:
		j.Status, j.Started = statusRunning, at
	case c.Status == statusCompleted && j.Status == statusRunning && j.Stats.Pending+j.Stats.Running == 0:
		j.Status, j.End = statusCompleted, at
	case c.Status == statusFailed && !j.finished():
		j.Stats.Failed += j.Stats.Pending + j.Stats.Running
		j.Stats.Pending, j.Stats.Running = 0, 0
		j.Status, j.End, j.Failure = statusFailed, at, c.Failure
	default:
		return
	}
	if c.Message != "" {
		j.Message = c.Message
	}
}

func (f *FSM) cancelJobLocked(ctx context.Context, c cancelJob) error {
	j, ok, err := f.job(c.ID)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: job %q", ErrNotFound, c.ID)
	}
	if j.finished() {
		return nil
	}
	j.Stats.Pending, j.Stats.Running = 0, 0
	j.Status, j.End, j.Message = statusCancelled, f.at.Load(), "cancelled"
	return f.putJobRecord(ctx, j)
}

func (f *FSM) expireJobsLocked(ctx context.Context, c expireJobs) (int, error) {
	if c.Max <= 0 {
		return 0, fmt.Errorf("%w: expireJobs needs a positive Max", ErrInvalid)
	}
	jobs, err := f.jobs()
	if err != nil {
		return 0, err
	}
	var ops []kv.Op
	for _, j := range jobs {
		if !j.finished() || j.End >= c.Before || len(ops) >= c.Max {
			continue
		}
		prefix := deviceJobKey(j.ID, "")
		all := true
		err := f.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				if len(ops) >= c.Max {
					all = false
					return nil
				}
				ops = append(ops, kv.Del(it.Item().KeyCopy(nil)))
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		if all && len(ops) < c.Max {
			ops = append(ops, kv.Del(jobKey(j.ID)))
		}
	}
	if len(ops) == 0 {
		return 0, nil
	}
	return len(ops), f.db.Commit(ctx, ops...)
}

// job reads one job's record.
func (f *FSM) job(id string) (jobRecord, bool, error) {
	var j jobRecord
	ok, err := f.get(jobKey(id), &j)
	return j, ok, err
}

// deviceJob reads one device's record in a job.
func (f *FSM) deviceJob(job, device string) (deviceJob, bool, error) {
	var d deviceJob
	ok, err := f.get(deviceJobKey(job, device), &d)
	return d, ok, err
}

func (f *FSM) get(key []byte, v any) (bool, error) {
	ok := false
	err := f.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		ok = true
		return item.Value(func(b []byte) error { return kv.Unmarshal(b, v) })
	})
	return ok, err
}

// jobs lists every job, by id.
func (f *FSM) jobs() ([]jobRecord, error) {
	var out []jobRecord
	err := eachRecord(f, jobPrefix, func(_ string, j jobRecord) error {
		out = append(out, j)
		return nil
	})
	return out, err
}

// eachDeviceJob calls fn for the device records after the key after (job
// id '/' device id, "" for all) in key order, while fn returns true; with
// job set, only that job's.
func (f *FSM) eachDeviceJob(job, after string, fn func(job, device string, d deviceJob) bool) error {
	prefix := deviceJobPrefix
	if job != "" {
		prefix = deviceJobKey(job, "")
	}
	return f.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		seek := prefix
		if after != "" {
			seek = append(slices.Clip(deviceJobPrefix), after...)
		}
		for it.Seek(seek); it.Valid(); it.Next() {
			k := it.Item().Key()[len(deviceJobPrefix):]
			if after != "" && bytes.Equal(k, []byte(after)) {
				continue
			}
			jobID, device, _ := strings.Cut(string(k), "/")
			var d deviceJob
			if err := it.Item().Value(func(v []byte) error { return kv.Unmarshal(v, &d) }); err != nil {
				return err
			}
			if !fn(jobID, device, d) {
				return nil
			}
		}
		return nil
	})
}
