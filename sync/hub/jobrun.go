package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/sync/hub/query"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// The job runner runs on the node that proposes commands: every single
// hub, a cluster's leader (h.leads). Every step it takes is a command
// (jobfsm.go), so another node that becomes leader carries on where the
// state says. A job runs in rounds:
//
//  1. queued, once its start time came: the runner evaluates
//     queryCondition over the device twins and records the devices it
//     matched, pending (in batches of jobListBatch), then the job running;
//  2. running: it takes the devices not done in chunks of jobChunk,
//     records them running, runs them jobWorkers at once (a service PATCH
//     of the twin, or the direct method) and records their results in
//     batches (every jobChunk results, jobFlushBytes of payloads or
//     jobFlushEvery);
//  3. when none is left, the job is completed (devices that failed do not
//     fail it); past maxExecutionTimeInSeconds it fails, and so do its
//     devices not done.
//
// A device runs at least once: after a restart or a change of leader, the
// devices recorded running but without a result run again; those with a
// result do not.

const (
	jobTick       = time.Second
	jobChunk      = 64
	jobWorkers    = 8
	jobFlushEvery = 500 * time.Millisecond
	jobFlushBytes = 1 << 20
	jobListBatch  = 1000
	// jobRetention is how long a finished job is kept (IoT Hub: 30 days).
	jobRetention = 7 * 24 * time.Hour
)

// jobRuns are the jobs this node runs, one goroutine each.
type jobRuns struct {
	mu      sync.Mutex
	running map[string]context.CancelFunc
	wg      sync.WaitGroup
	kick    chan struct{}
}

func newJobRuns() *jobRuns {
	return &jobRuns{running: map[string]context.CancelFunc{}, kick: make(chan struct{}, 1)}
}

// start runs f for job id unless it runs already.
func (r *jobRuns) start(parent context.Context, id string, f func(context.Context)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.running[id]; ok {
		return
	}
	ctx, cancel := context.WithCancel(parent)
	r.running[id] = cancel
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() {
			r.mu.Lock()
			delete(r.running, id)
			r.mu.Unlock()
			cancel()
		}()
		f(ctx)
	}()
}

// cancel stops job id's run, if it runs here.
func (r *jobRuns) cancel(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.running[id]; c != nil {
		c()
	}
}

// kickJobs asks the runner for a round now.
func (h *Hub) kickJobs() {
	select {
	case h.runs.kick <- struct{}{}:
	default:
	}
}

// runJobs is the runner's loop, started by Open: a round every jobTick
// and when kicked; it waits for the jobs' goroutines when the hub stops.
func (h *Hub) runJobs() {
	defer h.sweeper.Done()
	ctx, stop := context.WithCancel(context.Background())
	defer func() {
		stop()
		h.runs.wg.Wait()
	}()
	t := time.NewTicker(jobTick)
	defer t.Stop()
	var expired time.Time
	for {
		select {
		case <-h.done:
			return
		case <-t.C:
		case <-h.runs.kick:
		}
		if !h.leads() {
			continue // the leader runs the cluster's jobs
		}
		h.startJobs(ctx)
		if now := h.opts.Now(); now.Sub(expired) >= time.Minute {
			expired = now
			h.expireJobs()
		}
	}
}

// startJobs starts a goroutine for each job due and not finished.
func (h *Hub) startJobs(ctx context.Context) {
	jobs, err := h.fsm.jobs()
	if err != nil {
		h.log.Error("read jobs", "err", err)
		return
	}
	now := h.opts.Now().UnixMilli()
	for _, j := range jobs {
		if j.finished() || (j.Status == statusQueued && j.Start > now) {
			continue
		}
		h.runs.start(ctx, j.ID, func(ctx context.Context) {
			if err := h.runJob(ctx, j.ID); err != nil && ctx.Err() == nil {
				// The next round tries again.
				h.log.Warn("job run stopped", "job", j.ID, "err", err)
			}
		})
	}
}

// expireJobs removes the jobs finished for jobRetention.
func (h *Hub) expireJobs() {
	const batch = 1000
	for {
		res, err := h.applyResult(context.Background(), expireJobs{Before: h.opts.Now().Add(-jobRetention).UnixMilli(), Max: batch})
		if err != nil {
			h.log.Error("job retention", "err", err)
			return
		}
		if n, _ := res.(int); n < batch {
			return
		}
	}
}

// runJob takes job id through its rounds until it finishes, or the run is
// stopped (the hub stops, the job is cancelled, a step fails).
func (h *Hub) runJob(ctx context.Context, id string) error {
	j, ok, err := h.fsm.job(id)
	if err != nil || !ok {
		return err
	}
	if j.Status == statusQueued {
		if err := h.listJobDevices(ctx, j); err != nil {
			return err
		}
	}
	after := ""
	for {
		if j, ok, err = h.fsm.job(id); err != nil || !ok || j.Status != statusRunning {
			return err
		}
		deadline := time.UnixMilli(j.Started).Add(time.Duration(j.MaxSeconds) * time.Second)
		left := deadline.Sub(h.opts.Now())
		if left <= 0 {
			msg := fmt.Sprintf("maxExecutionTimeInSeconds (%d) passed with %d devices not done", j.MaxSeconds, j.Stats.Pending+j.Stats.Running)
			return h.apply(ctx, jobProgress{ID: id, Status: statusFailed, Failure: msg, Message: msg})
		}
		chunk, err := h.jobChunk(id, after)
		if err != nil {
			return err
		}
		if len(chunk) == 0 && after == "" {
			return h.apply(ctx, jobProgress{ID: id, Status: statusCompleted, Message: "completed"})
		}
		if len(chunk) == 0 { // a pass ended: look again for devices a failed flush left
			after = ""
			continue
		}
		after = id + "/" + chunk[len(chunk)-1].Device
		cctx, cancel := context.WithTimeout(ctx, left)
		err = h.runChunk(cctx, j, chunk)
		cancel()
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// listJobDevices records the devices a queued job's condition matches and
// starts it; a condition that does not run, or matches too many devices,
// fails it.
func (h *Hub) listJobDevices(ctx context.Context, j jobRecord) error {
	cond, err := query.ParseCondition(j.Condition)
	if err != nil {
		return h.apply(ctx, jobProgress{ID: j.ID, Status: statusFailed, Failure: "queryCondition: " + err.Error(), Message: "the query did not run"})
	}
	var ids []string
	for id, doc := range h.twinDocs(false, "", cond) {
		if !cond.Match(doc) {
			continue
		}
		if len(ids) == maxJobDevices {
			msg := fmt.Sprintf("queryCondition matches more than %d devices, the most one job runs on: narrow it, or split the job", maxJobDevices)
			return h.apply(ctx, jobProgress{ID: j.ID, Status: statusFailed, Failure: msg, Message: msg})
		}
		ids = append(ids, id)
	}
	for len(ids) > 0 {
		n := min(len(ids), jobListBatch)
		c := jobProgress{ID: j.ID, Devices: make([]deviceResult, n)}
		for i, id := range ids[:n] {
			c.Devices[i] = deviceResult{Device: id, Status: statusPending}
		}
		if err := h.apply(ctx, c); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return h.apply(ctx, jobProgress{ID: j.ID, Status: statusRunning, Message: "running"})
}

// jobChunk is the next jobChunk devices of a job not done (pending, or
// running without a result), after the key after.
func (h *Hub) jobChunk(id, after string) ([]deviceResult, error) {
	var out []deviceResult
	err := h.fsm.eachDeviceJob(id, after, func(_, device string, d deviceJob) bool {
		if d.Status == statusPending || d.Status == statusRunning {
			out = append(out, deviceResult{Device: device, Status: d.Status})
		}
		return len(out) < jobChunk
	})
	return out, err
}

// runChunk records the devices running, runs them jobWorkers at once and
// records their results in batches. A device whose run was interrupted
// (ctx) gets no result: it runs again.
func (h *Hub) runChunk(ctx context.Context, j jobRecord, chunk []deviceResult) error {
	mark := jobProgress{ID: j.ID}
	for _, d := range chunk {
		if d.Status == statusPending {
			mark.Devices = append(mark.Devices, deviceResult{Device: d.Device, Status: statusRunning})
		}
	}
	if len(mark.Devices) > 0 {
		if err := h.apply(ctx, mark); err != nil {
			return err
		}
	}
	work := make(chan string)
	results := make(chan deviceResult)
	var wg sync.WaitGroup
	for range min(jobWorkers, len(chunk)) {
		wg.Go(func() {
			for device := range work {
				if r, ok := h.runDevice(ctx, j, device); ok {
					results <- r
				}
			}
		})
	}
	go func() {
		defer close(work)
		for _, d := range chunk {
			select {
			case work <- d.Device:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		wg.Wait()
		close(results)
	}()
	return h.collectResults(ctx, j.ID, results)
}

// collectResults records results in batches until the channel closes.
func (h *Hub) collectResults(ctx context.Context, id string, results <-chan deviceResult) error {
	var (
		batch    []deviceResult
		size     int
		firstErr error
	)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		// Results are recorded even when the run stops: they happened.
		if err := h.apply(context.WithoutCancel(ctx), jobProgress{ID: id, Devices: batch}); err != nil && firstErr == nil {
			firstErr = err
		}
		batch, size = nil, 0
	}
	t := time.NewTicker(jobFlushEvery)
	defer t.Stop()
	for {
		select {
		case r, ok := <-results:
			if !ok {
				flush()
				return firstErr
			}
			batch = append(batch, r)
			if size += len(r.Payload) + len(r.ErrDesc); len(batch) >= jobChunk || size >= jobFlushBytes {
				flush()
			}
		case <-t.C:
			flush()
		}
	}
}

// runDevice runs a job on one device; false when the run was interrupted
// and the device must run again.
func (h *Hub) runDevice(ctx context.Context, j jobRecord, device string) (deviceResult, bool) {
	var (
		status  int
		payload []byte
		err     error
	)
	switch j.Type {
	case jobUpdateTwin:
		_, err = h.UpdateTwin(ctx, device, j.Twin, false)
	case jobDeviceMethod:
		m := j.Method
		status, payload, err = h.InvokeMethod(ctx, device, protocol.MethodRequest{MethodName: m.Name, Payload: m.Payload,
			ResponseTimout: m.ResponseTimeout, ConnectTimeout: m.ConnectTimeout})
	default:
		err = fmt.Errorf("%w: job type %q", ErrInvalid, j.Type)
	}
	switch {
	case err != nil && (ctx.Err() != nil || errors.Is(err, ErrNotLeader) || errors.Is(err, ErrUnavailable)):
		return deviceResult{}, false
	case err != nil:
		_, code := errorStatus(err)
		return deviceResult{Device: device, Status: statusFailed, ErrCode: code, ErrDesc: err.Error()}, true
	}
	r := deviceResult{Device: device, Status: statusCompleted, MethodStatus: status}
	if len(payload) > 0 {
		if !json.Valid(payload) {
			payload, _ = json.Marshal(string(payload))
		}
		r.Payload = payload
	}
	return r, true
}
