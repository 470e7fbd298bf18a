package scenario

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/outpost-edge/outpost/cmd/internal/certs"
	"github.com/outpost-edge/outpost/cmd/internal/hub"
	"github.com/outpost-edge/outpost/cmd/internal/hubclient"
	"github.com/outpost-edge/outpost/cmd/internal/localapi"
	"github.com/outpost-edge/outpost/store/identity/sas"
)

// hubready DIR: wait for a hub's DIR/ready.json and export $HUB (its URL),
// $HUB_CA (the CA it made for itself, if any) and
// OUTPOST_HUB_CONNECTION_STRING (its owner connection string), so the CLI
// commands reach it.
func cmdHubReady(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: hubready DIR")
	}
	dir := ts.MkAbs(args[0])
	var r hub.Ready
	waitReadyFile(ts, dir, &r)
	cs, err := os.ReadFile(filepath.Join(dir, "owner.connection-string"))
	ts.Check(err)
	ts.Setenv("HUB", r.URL)
	ts.Setenv("HUB_ADDR", strings.TrimPrefix(strings.TrimPrefix(r.URL, "http://"), "https://"))
	ts.Setenv("HUB_HOST", r.HostName)
	ts.Setenv("HUB_PID", fmt.Sprint(r.PID))
	ts.Setenv("OUTPOST_HUB_CONNECTION_STRING", strings.TrimSpace(string(cs)))
	ts.Setenv("OUTPOST_HUB_URL", r.URL)
	ts.Setenv("HUB_CA", r.CA)
}

// hubGet sends an owner-authenticated GET to the hub ($HUB).
func hubGet(ts *testscript.TestScript, path string) (int, []byte) {
	cs, err := sas.ParseConnString(ts.Getenv("OUTPOST_HUB_CONNECTION_STRING"))
	ts.Check(err)
	req, err := http.NewRequest("GET", ts.Getenv("HUB")+path, nil)
	ts.Check(err)
	req.Header.Set("Authorization", sas.NewToken(cs.Resource(), cs.SharedAccessKey, cs.SharedAccessKeyName, time.Now().Add(time.Hour)))
	client := http.DefaultClient
	if ca := ts.Getenv("SSL_CERT_FILE"); ca != "" { // as the CLI trusts the hub
		pool, err := certs.LoadCAs(ca, "SSL_CERT_FILE")
		ts.Check(err)
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// waitevents N: wait until the hub's event log holds at least N events.
func cmdWaitEvents(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: waitevents N")
	}
	n, err := strconv.Atoi(args[0])
	ts.Check(err)
	poll(ts, args[0]+" events at the hub", func() string {
		code, data := hubGet(ts, "/healthz")
		var h struct{ Events int }
		if code != 200 || json.Unmarshal(data, &h) != nil {
			return string(data)
		}
		if h.Events >= n {
			return ""
		}
		return fmt.Sprintf("%d events", h.Events)
	})
}

// waithubtwin ID PATTERN: wait until `outpost twin show ID` at the hub
// matches PATTERN (with !, until it reads without a match).
func cmdWaitHubTwin(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: [!] waithubtwin ID PATTERN")
	}
	re := regexp.MustCompile(args[1])
	what := "hub twin " + args[0] + " ~ " + args[1]
	if neg {
		what = "hub twin " + args[0] + " without " + args[1]
	}
	poll(ts, what, func() string {
		code, data := hubGet(ts, "/twins/"+args[0])
		var v any
		if code == 200 && json.Unmarshal(data, &v) == nil {
			pretty, _ := json.MarshalIndent(v, "", "  ")
			if re.Match(pretty) != neg {
				return ""
			}
		}
		return string(data)
	})
}

// checkevents ACKFILE: every message id in ACKFILE (PUBACKed by the edge)
// is in the hub's event log exactly once, no message id of a device is
// there twice, each device's messages <dev>-<n> are in order of n, and
// the log's seqs have no gap (each one more than the last). With -body,
// messages are known by their bodies instead (free-topic messages, whose
// ids the edge makes).
func cmdCheckEvents(ts *testscript.TestScript, neg bool, args []string) {
	fs := flag.NewFlagSet("checkevents", flag.ContinueOnError)
	droppedAt := fs.String("dropped", "", "edge API whose queues dropped messages (drop-oldest): exactly that many acknowledged ones may be missing")
	byBody := fs.Bool("body", false, "know messages by their bodies, not their message ids")
	ts.Check(fs.Parse(args))
	args = fs.Args()
	if len(args) != 1 {
		ts.Fatalf("usage: checkevents [-dropped API] [-body] ACKFILE")
	}
	dropped := 0
	if *droppedAt != "" {
		st, err := localapi.FetchStatus(*droppedAt)
		ts.Check(err)
		for _, q := range st.Queues {
			dropped += int(q.Dropped)
		}
		if dropped == 0 {
			ts.Fatalf("checkevents -dropped: the edge dropped nothing")
		}
	}
	count := map[string]int{}
	last := map[string]int{}
	dups, disorder, gaps := 0, 0, 0
	var prev uint64
	hubEvents(ts, 1, func(e hubEvent) {
		if prev != 0 && e.Seq != prev+1 {
			if gaps++; gaps <= 5 {
				fmt.Fprintf(ts.Stderr(), "a gap in the event log: seq %d after %d\n", e.Seq, prev)
			}
		}
		prev = e.Seq
		id := e.MessageID
		if *byBody {
			id = string(e.Body)
		}
		if count[id]++; count[id] == 2 {
			dups++
		}
		dev, n, ok := strings.Cut(id, "-")
		if i, err := strconv.Atoi(n); ok && err == nil && dev == e.DeviceID {
			if i <= last[dev]-1 {
				disorder++
			}
			last[dev] = i + 1
		}
	})
	acked, missing := 0, 0
	for _, id := range strings.Fields(ts.ReadFile(args[0])) {
		acked++
		if count[id] == 0 {
			if missing++; missing <= 5 && dropped == 0 {
				fmt.Fprintf(ts.Stderr(), "acknowledged by the edge but not at the hub: %s\n", id)
			}
		}
	}
	fmt.Fprintf(ts.Stdout(), "%d acknowledged, %d events, %d missing, %d duplicated, %d out of order, %d gaps\n", acked, len(count), missing-dropped, dups, disorder, gaps)
	if dropped > 0 {
		fmt.Fprintf(ts.Stdout(), "%d dropped by the edge (drop-oldest), %d acknowledged ones absent\n", dropped, missing)
	}
	if (missing != dropped || dups > 0 || disorder > 0 || gaps > 0 || acked == 0) != neg {
		ts.Fatalf("event log check failed")
	}
}

// cmptwins API ID WANT: wait until the twin of ID, at the edge (API, read
// with the operator token $API_TOKEN names) and at
// the hub, has exactly the tags and desired and reported properties of WANT
// ({"tags":…,"desired":…,"reported":…}, inline or a golden file holding
// it); $version and $metadata, which are per replica, are not compared.
func cmdCmpTwins(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: cmptwins API ID WANT|FILE")
	}
	wantDoc := args[2]
	if !strings.HasPrefix(strings.TrimSpace(wantDoc), "{") {
		wantDoc = ts.ReadFile(wantDoc)
	}
	var want any
	ts.Check(json.Unmarshal([]byte(wantDoc), &want))
	wantS, _ := json.Marshal(want)
	poll(ts, "twin "+args[1]+" = "+string(wantS)+" at the edge and the hub", func() string {
		_, edgeDoc := httpDo(ts, httpReq{method: "GET", url: "http://" + args[0] + "/twins/" + args[1], token: envToken(ts)})
		_, hubDoc := hubGet(ts, "/twins/"+args[1])
		e, h := twinValues(edgeDoc), twinValues(hubDoc)
		if e == string(wantS) && h == string(wantS) {
			return ""
		}
		return "edge " + e + ", hub " + h
	})
}

// twinValues reduces a service twin to {"desired","reported","tags"}
// without the $-prefixed per-replica keys, as canonical JSON.
func twinValues(doc []byte) string {
	t, err := hubclient.ParseTwinValues(doc)
	if err != nil {
		return string(doc)
	}
	out, _ := json.Marshal(map[string]any{"tags": t.Tags, "desired": t.Desired, "reported": t.Reported})
	return string(out)
}

// eventbodies FROM: print the hub's events from seq FROM, one per line:
// "<seq> <deviceId>/<moduleId> <decoded body>"; then $NEXTSEQ is the seq
// after the last one printed (FROM when none).
func cmdEventBodies(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: eventbodies FROM")
	}
	from, err := strconv.ParseUint(args[0], 10, 64)
	ts.Check(err)
	next := from
	hubEvents(ts, from, func(e hubEvent) {
		fmt.Fprintf(ts.Stdout(), "%d %s/%s %s\n", e.Seq, e.DeviceID, e.ModuleID, e.Body)
		next = e.Seq + 1
	})
	ts.Setenv("NEXTSEQ", strconv.FormatUint(next, 10))
}

// eventtally: print one line per distinct event of the hub's log — device
// (and module), message id and body — with how many times it is there,
// sorted: "<n> <deviceId>[/<moduleId>] <messageId> <body>". Compare it with
// a golden file: every message once, with its message id.
func cmdEventTally(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 0 {
		ts.Fatalf("usage: eventtally")
	}
	count := map[string]int{}
	hubEvents(ts, 1, func(e hubEvent) {
		src := e.DeviceID
		if e.ModuleID != "" {
			src += "/" + e.ModuleID
		}
		count[fmt.Sprintf("%s %s %s", src, e.MessageID, e.Body)]++
	})
	keys := slices.Sorted(maps.Keys(count))
	for _, k := range keys {
		fmt.Fprintf(ts.Stdout(), "%d %s\n", count[k], k)
	}
}

// hubEvent is an event of the hub's log, as GET /messages/events gives it.
type hubEvent struct {
	Seq       uint64
	DeviceID  string
	ModuleID  string
	MessageID string
	Body      []byte
}

// hubEvents calls f for every event of the hub's log from seq from on, in
// order, page by page; it fails the script if seq does not increase. A
// page answered 503 (a cluster between leaders) is asked again, as
// Retry-After says, for up to 30 s.
func hubEvents(ts *testscript.TestScript, from uint64, f func(hubEvent)) {
	for {
		path := fmt.Sprintf("/messages/events?from=%d&limit=10000", from)
		code, data := hubGet(ts, path)
		for deadline := time.Now().Add(30 * time.Second); code == 503 && time.Now().Before(deadline); {
			time.Sleep(time.Second)
			code, data = hubGet(ts, path)
		}
		if code != 200 {
			ts.Fatalf("read events: %d %s", code, data)
		}
		var evs []hubEvent
		ts.Check(json.Unmarshal(data, &evs))
		if len(evs) == 0 {
			return
		}
		for _, e := range evs {
			if e.Seq < from {
				ts.Fatalf("event seq %d after %d: not strictly increasing", e.Seq, from-1)
			}
			from = e.Seq + 1
			f(e)
		}
	}
}
