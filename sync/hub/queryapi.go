package hub

import (
	"encoding/json"
	"fmt"
	"iter"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/outpost-edge/outpost/store/identity"
	"github.com/outpost-edge/outpost/store/twin"
	"github.com/outpost-edge/outpost/sync/hub/query"
)

// maxQueryBody bounds a query request's body ({"query":"…"}; the text
// itself is bounded by query.MaxTextBytes).
const maxQueryBody = 16 << 10

// queryDevices is POST /devices/query (and /devices/modules/query): IoT
// Hub's query language over the twins, paged with x-ms-max-item-count and
// x-ms-continuation (present in the answer exactly when more pages follow).
func (h *Hub) queryDevices(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Query string `json:"query"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxQueryBody)).Decode(&body); err != nil || strings.TrimSpace(body.Query) == "" {
		return fmt.Errorf("%w: want {\"query\":\"SELECT * FROM devices WHERE …\"}", ErrInvalid)
	}
	page, err := pageOf(r)
	if err != nil {
		return err
	}
	res, itemType, err := h.Query(body.Query, page)
	if err != nil {
		return err
	}
	if res.Continuation != "" {
		w.Header().Set("x-ms-continuation", res.Continuation)
	}
	w.Header().Set("x-ms-item-type", itemType)
	writeJSON(w, 200, res.Items)
	return nil
}

// Query runs a query of IoT Hub's language over the hub's twins (FROM
// devices, devices.modules) or jobs (devices.jobs), one page of it; the
// item type is what IoT Hub names the items (twin, deviceJob or raw).
func (h *Hub) Query(text string, page query.Page) (query.Result, string, error) {
	q, err := query.Parse(text)
	if err != nil {
		return query.Result{}, "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	after, err := q.Resume(page.Continuation)
	if err != nil {
		return query.Result{}, "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var docs iter.Seq2[string, map[string]any]
	itemType := "raw"
	switch q.From() {
	case query.Devices, query.Modules:
		docs = h.twinDocs(q.From() == query.Modules, after, q.Where())
		if q.Star() {
			itemType = "twin"
		}
	case query.Jobs:
		docs = h.deviceJobDocs(after)
		itemType = "deviceJob"
	}
	res, err := q.Run(docs, page)
	if err != nil {
		return query.Result{}, "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return res, itemType, nil
}

// twinDocs yields the twin documents of devices (or modules) in id order,
// after the key a continuation resumes from. A condition on deviceId
// alone (deviceId = 'x', deviceId IN [...]) reads only those twins; any
// other reads the store in one pass (twin.Store.Scan).
func (h *Hub) twinDocs(modules bool, after string, where *query.Condition) iter.Seq2[string, map[string]any] {
	if field, values, ok := where.Keys(); ok && field == "deviceId" {
		return h.twinDocsOf(modules, after, values)
	}
	return func(yield func(string, map[string]any) bool) {
		presence := h.fsm.presenceAll()
		ids := h.ids()
		var keep identity.Identity
		_ = h.twins().Scan(after, func(id string) bool {
			if strings.Contains(id, "/") != modules {
				return false
			}
			var ok bool
			keep, ok, _ = ids.Get(id)
			return ok
		}, func(v *twin.View) bool {
			return yield(v.ID, h.twinDocWith(keep, v, presence[v.ID]))
		})
	}
}

// twinDocsOf yields the twins of the devices named (or their modules'),
// in id order, after a continuation's key.
func (h *Hub) twinDocsOf(modules bool, after string, devices []string) iter.Seq2[string, map[string]any] {
	var ids []identity.Identity
	if modules {
		ids, _ = h.ids().List() // sorted by id
		want := make(map[string]bool, len(devices))
		for _, d := range devices {
			want[d] = true
		}
		ids = slices.DeleteFunc(ids, func(i identity.Identity) bool {
			return i.ModuleID == "" || !want[i.DeviceID] || i.ID() <= after
		})
	} else {
		for _, d := range slices.Compact(slices.Sorted(slices.Values(devices))) {
			if id, ok, _ := h.ids().Get(d); ok && id.ModuleID == "" && d > after {
				ids = append(ids, id)
			}
		}
	}
	return func(yield func(string, map[string]any) bool) {
		for _, id := range ids {
			v, err := h.twins().Get(id.ID())
			if err != nil {
				continue // deleted meanwhile
			}
			if !yield(id.ID(), h.twinDoc(id, v)) {
				return
			}
		}
	}
}

// deviceJobDocs yields the per-device results of jobs (FROM devices.jobs)
// in key order (job id '/' device id) after a continuation's key.
func (h *Hub) deviceJobDocs(after string) iter.Seq2[string, map[string]any] {
	return func(yield func(string, map[string]any) bool) {
		jobs := map[string]*jobRecord{}
		_ = h.fsm.eachDeviceJob("", after, func(jobID, device string, d deviceJob) bool {
			j, ok := jobs[jobID]
			if !ok {
				if rec, found, err := h.fsm.job(jobID); err == nil && found {
					j = &rec
				}
				jobs[jobID] = j
			}
			if j == nil {
				return true // its job is being removed
			}
			return yield(jobID+"/"+device, deviceJobDoc(j, device, d))
		})
	}
}

// deviceJobDoc is one device's result in a job, as IoT Hub's device job.
func deviceJobDoc(j *jobRecord, device string, d deviceJob) map[string]any {
	status := shownStatus(d.Status, j.Status)
	doc := map[string]any{"deviceId": device, "jobId": j.ID, "jobType": j.Type, "status": status,
		"createdDateTimeUtc": isoMillis(d.Created), "lastUpdatedDateTimeUtc": isoMillis(d.Updated)}
	if d.Start != 0 {
		doc["startTimeUtc"] = isoMillis(d.Start)
	}
	switch {
	case d.End != 0:
		doc["endTimeUtc"] = isoMillis(d.End)
	case status != d.Status && j.End != 0: // ended with its job
		doc["endTimeUtc"] = isoMillis(j.End)
	}
	if d.Status == statusCompleted && j.Type == jobDeviceMethod {
		var payload any
		if len(d.Payload) > 0 && json.Unmarshal(d.Payload, &payload) != nil {
			payload = string(d.Payload)
		}
		doc["outcome"] = map[string]any{"deviceMethodResponse": map[string]any{"status": d.MethodStatus, "payload": payload}}
	}
	switch {
	case d.ErrCode != "":
		doc["error"] = map[string]any{"code": d.ErrCode, "description": d.ErrDesc}
	case status == statusFailed && d.Status != statusFailed:
		doc["error"] = map[string]any{"code": "JobFailed", "description": j.Message}
	}
	return doc
}

// pageOf reads a paged request's headers, as IoT Hub's: x-ms-max-item-count
// (the page size) and x-ms-continuation (where the last page ended).
func pageOf(r *http.Request) (query.Page, error) {
	page := query.Page{Continuation: r.Header.Get("x-ms-continuation")}
	if s := r.Header.Get("x-ms-max-item-count"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return page, fmt.Errorf("%w: x-ms-max-item-count %q: want a page size from 1 to %d", ErrInvalid, s, query.MaxPageSize)
		}
		page.Max = n
	}
	return page, nil
}
