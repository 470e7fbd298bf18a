package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/cli"
	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
	"github.com/outpost-edge/outpost/sync/hub/query"
)

var jobCmd = hubCommand("job",
	"schedule twin updates or direct methods over the devices a condition matches (IoT Hub jobs); show, list or cancel them",
	"create ID --query-condition C (--twin-patch JSON | --method NAME [--payload JSON] [--method-timeout S]) [--start TIME] [--max-time S] | show ID | list [--type T] [--status S] | cancel ID",
	func(fs *flag.FlagSet) {
		fs.String("query-condition", "", "create: the devices the job runs on, a condition of IoT Hub's query language, e.g. \"tags.env='prod'\" or \"deviceId IN ['d1','d2']\"")
		fs.String("twin-patch", "", "create: a twin update job: the patch of tags and properties.desired, e.g. '{\"tags\":{\"fw\":\"2.1\"}}'")
		fs.String("method", "", "create: a direct method job: the method's name")
		fs.String("payload", "null", "create --method: the method's JSON payload")
		fs.Int("method-timeout", 30, "create --method: seconds each device has to answer")
		fs.String("start", "", "create: when to start, RFC 3339 (default: now)")
		fs.Int("max-time", 3600, "create: seconds the job may run; devices not done by then fail")
		fs.String("type", "", "list: only jobs of this type (scheduleUpdateTwin, scheduleDeviceMethod)")
		fs.String("status", "", "list: only jobs in this status (queued, running, completed, failed, cancelled)")
	},
	runJob,
)

// jobFlags are the flags each subcommand of job takes.
var jobFlags = map[string][]string{
	"create": {"query-condition", "twin-patch", "method", "payload", "method-timeout", "start", "max-time"},
	"list":   {"type", "status"},
}

func runJob(ctx context.Context, h *hubCall) error {
	sub, args, err := h.sub(map[string]int{"create": 1, "show": 1, "list": 0, "cancel": 1})
	if err != nil {
		return err
	}
	for _, name := range append(append([]string(nil), jobFlags["create"]...), jobFlags["list"]...) {
		if !slices.Contains(jobFlags[sub], name) {
			if err := h.only(sub, name); err != nil {
				return err
			}
		}
	}
	var body map[string]any
	if sub == "create" {
		if body, err = jobBody(h, args[0]); err != nil {
			return err
		}
	}
	c, err := h.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	switch sub {
	case "create":
		err = c.Do(ctx, http.MethodPut, hubclient.PathOf("jobs", "v2", args[0]), body, &raw)
	case "show":
		err = c.Do(ctx, http.MethodGet, hubclient.PathOf("jobs", "v2", args[0]), nil, &raw)
	case "cancel":
		err = c.Do(ctx, http.MethodPost, hubclient.PathOf("jobs", "v2", args[0], "cancel"), nil, &raw)
	default:
		return jobList(ctx, h, c)
	}
	if err != nil {
		return err
	}
	return h.write(raw)
}

// jobBody builds the body of PUT /jobs/v2/{id} from create's flags,
// checking them before anything is sent.
func jobBody(h *hubCall, id string) (map[string]any, error) {
	if err := checkID("job id", id); err != nil {
		return nil, err
	}
	cond := h.str("query-condition")
	if strings.TrimSpace(cond) == "" {
		return nil, cli.Usagef("job create needs --query-condition, e.g. \"tags.env='prod'\"")
	}
	if _, err := query.ParseCondition(cond); err != nil {
		return nil, cli.Usagef("--query-condition: %v", err)
	}
	body := map[string]any{"jobId": id, "queryCondition": cond, "maxExecutionTimeInSeconds": h.get("max-time").(int), "startTime": nil}
	if s := h.str("start"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return nil, cli.Usagef("--start %q: want a time like 2026-12-24T18:00:00Z", s)
		}
		body["startTime"] = t.UTC().Format(time.RFC3339)
	}
	patch, method := h.str("twin-patch"), h.str("method")
	switch {
	case (patch == "") == (method == ""):
		return nil, cli.Usagef("job create takes --twin-patch JSON (a twin update) or --method NAME (a direct method), one of them")
	case patch != "":
		if err := h.only("--twin-patch", "payload", "method-timeout"); err != nil {
			return nil, err
		}
		var p map[string]json.RawMessage
		if err := json.Unmarshal([]byte(patch), &p); err != nil {
			return nil, cli.Usagef("--twin-patch must be a JSON object like {\"tags\":{…},\"properties\":{\"desired\":{…}}}: %v", err)
		}
		body["type"], body["updateTwin"] = "scheduleUpdateTwin", json.RawMessage(patch)
	default:
		payload := h.str("payload")
		if !json.Valid([]byte(payload)) {
			return nil, cli.Usagef("--payload %q is not JSON (a string needs its quotes: '\"text\"')", payload)
		}
		body["type"] = "scheduleDeviceMethod"
		body["cloudToDeviceMethod"] = map[string]any{"methodName": method, "payload": json.RawMessage(payload),
			"responseTimeoutInSeconds": h.get("method-timeout").(int)}
	}
	return body, nil
}

// jobList prints the jobs, following the hub's pages.
func jobList(ctx context.Context, h *hubCall, c *hubclient.Client) error {
	q := url.Values{}
	if t := h.str("type"); t != "" {
		q.Set("jobType", t)
	}
	if s := h.str("status"); s != "" {
		q.Set("jobStatus", s)
	}
	path := "/jobs/v2/query"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var all []json.RawMessage
	cont := ""
	for {
		var page []json.RawMessage
		next, err := c.DoPage(ctx, path, cont, &page)
		if err != nil {
			return err
		}
		all = append(all, page...)
		if next == "" {
			break
		}
		cont = next
	}
	if !h.table {
		if all == nil {
			all = []json.RawMessage{}
		}
		return h.writeValue(all)
	}
	w := tabwriter.NewWriter(h.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "JOB ID\tTYPE\tSTATUS\tDEVICES\tSUCCEEDED\tFAILED\tQUERY CONDITION")
	for _, raw := range all {
		var j struct {
			JobID, Type, Status, QueryCondition string
			DeviceJobStatistics                 struct{ DeviceCount, SucceededCount, FailedCount int64 }
		}
		if err := json.Unmarshal(raw, &j); err != nil {
			return fmt.Errorf("the hub's list of jobs: %w", err)
		}
		s := j.DeviceJobStatistics
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", j.JobID, j.Type, j.Status, s.DeviceCount, s.SucceededCount, s.FailedCount, j.QueryCondition)
	}
	return w.Flush()
}
