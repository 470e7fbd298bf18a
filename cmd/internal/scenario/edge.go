package scenario

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/outpost-edge/outpost/cmd/internal/certs"
	"github.com/outpost-edge/outpost/cmd/internal/edge"
	"github.com/outpost-edge/outpost/cmd/internal/localapi"
)

// waitready DIR: wait for an edge's DIR/ready.json and export its addresses
// as $MQTT, $MQTTS, $WS, $API, $CA and $DOWNSTREAM (--downstream), and the path of its local API's
// operator token (DIR/api-token) as $API_TOKEN.
func cmdWaitReady(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: waitready DIR")
	}
	var r edge.Ready
	waitReadyFile(ts, ts.MkAbs(args[0]), &r)
	for k, v := range map[string]string{"MQTT": r.MQTT, "MQTTS": r.MQTTS, "WS": r.WS, "API": r.API, "CA": r.CA, "DOWNSTREAM": r.Downstream,
		"API_TOKEN": localapi.TokenPath(ts.MkAbs(args[0]))} {
		ts.Setenv(k, v)
	}
}

// hup DIR: send SIGHUP to the edge whose ready.json is in DIR (it reloads
// its deployment).
func cmdHup(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: hup DIR")
	}
	path := filepath.Join(ts.MkAbs(args[0]), "ready.json")
	read := func() edge.Ready {
		var r edge.Ready
		data, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(data, &r)
		}
		ts.Check(err)
		return r
	}
	before := read()
	p, err := os.FindProcess(before.PID)
	ts.Check(err)
	ts.Check(p.Signal(syscall.SIGHUP))
	for deadline := time.Now().Add(10 * time.Second); read().Reloads == before.Reloads; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			ts.Fatalf("the edge did not reload in 10s")
		}
	}
}

// waitlink API STATE: wait until the edge's link state starts with STATE
// (online, offline).
func cmdWaitLink(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: waitlink API STATE")
	}
	poll(ts, "link "+args[1], func() string {
		st, err := localapi.FetchStatus(args[0])
		if err != nil {
			return err.Error()
		}
		if strings.HasPrefix(st.Link, args[1]) {
			return ""
		}
		return st.Link
	})
}

// waitqueue API QUEUE DEPTH: wait until the edge's queue holds DEPTH
// messages.
func cmdWaitQueue(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: waitqueue API QUEUE DEPTH")
	}
	want, err := strconv.ParseInt(args[2], 10, 64)
	ts.Check(err)
	poll(ts, args[1]+" at depth "+args[2], func() string {
		st, err := localapi.FetchStatus(args[0])
		if err != nil {
			return err.Error()
		}
		for _, q := range st.Queues {
			if q.Name == args[1] {
				if q.Depth == want {
					return ""
				}
				return fmt.Sprintf("depth %d", q.Depth)
			}
		}
		if want == 0 {
			return "" // an idle priority lane is left out of /status
		}
		return "no such queue"
	})
}

// waittwin API ID PATTERN: wait until the edge's twin of ID matches PATTERN
// (read with the operator token $API_TOKEN names).
func cmdWaitTwin(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: waittwin API ID PATTERN")
	}
	re := regexp.MustCompile(args[2])
	poll(ts, "edge twin "+args[1]+" ~ "+args[2], func() string {
		code, data := httpDo(ts, httpReq{method: "GET", url: "http://" + args[0] + "/twins/" + args[1], token: envToken(ts)})
		if code == 200 && re.Match(data) {
			return ""
		}
		return string(data)
	})
}

// checkacked API QUEUE ACKFILE: every message id in ACKFILE (PUBACKed
// before a crash) is in the queue, read through the edge's API page by
// page (with the operator token $API_TOKEN names).
func cmdCheckAcked(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: checkacked API QUEUE ACKFILE")
	}
	stored := map[string]bool{}
	var after uint64
	for {
		url := fmt.Sprintf("http://%s/queues/%s?after=%d&limit=1000", args[0], args[1], after)
		code, data := httpDo(ts, httpReq{method: "GET", url: url, token: envToken(ts)})
		if code != http.StatusOK {
			ts.Fatalf("GET %s: %d %s", url, code, data)
		}
		var page struct {
			Messages []struct {
				MessageID string `json:"messageId"`
			} `json:"messages"`
			Next *uint64 `json:"next"`
		}
		ts.Check(json.Unmarshal(data, &page))
		for _, m := range page.Messages {
			stored[m.MessageID] = true
		}
		if page.Next == nil {
			break
		}
		after = *page.Next
	}
	f, err := os.Open(ts.MkAbs(args[2]))
	ts.Check(err)
	defer f.Close()
	acked, missing := 0, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		acked++
		if !stored[sc.Text()] {
			missing++
			if missing <= 5 {
				fmt.Fprintf(ts.Stderr(), "acknowledged but not stored: %s\n", sc.Text())
			}
		}
	}
	fmt.Fprintf(ts.Stdout(), "%d acknowledged, %d stored, %d missing\n", acked, len(stored), missing)
	if (missing > 0 || acked == 0) != neg {
		ts.Fatalf("%d of %d acknowledged messages missing", missing, acked)
	}
}

// mkcerts [-valid DURATION] DIR HOST...: a CA (DIR/ca.pem) and a server
// certificate for HOSTs (DIR/server.pem, DIR/server-key.pem), valid for
// DURATION (e.g. 72h; default two years).
func cmdMkCerts(ts *testscript.TestScript, neg bool, args []string) {
	validity := certs.ServerValidity
	if len(args) > 1 && args[0] == "-valid" {
		d, err := time.ParseDuration(args[1])
		ts.Check(err)
		validity, args = d, args[2:]
	}
	if len(args) < 2 {
		ts.Fatalf("usage: mkcerts [-valid DURATION] DIR HOST...")
	}
	_, err := certs.LocalCAValid(ts.MkAbs(args[0]), args[1:], validity)
	ts.Check(err)
}

// waitstatus API PATTERN: wait until the edge's status (GET /status as
// compact JSON, modules and deployment included) matches PATTERN.
func cmdWaitStatus(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: waitstatus API PATTERN")
	}
	re := regexp.MustCompile(args[1])
	poll(ts, "edge status ~ "+args[1], func() string {
		code, data := httpDo(ts, httpReq{method: "GET", url: "http://" + args[0] + "/status"})
		if code == 200 && re.Match(data) {
			return ""
		}
		return string(data)
	})
}

// killmodule API MODULE: SIGKILL a module's process (its pid from the
// edge's status), as a crash would end it.
func cmdKillModule(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: killmodule API MODULE")
	}
	st, err := localapi.FetchStatus(args[0])
	ts.Check(err)
	m, ok := st.Modules[args[1]]
	if !ok || m.PID == 0 {
		ts.Fatalf("module %s is not running: %+v", args[1], m)
	}
	ts.Check(syscall.Kill(m.PID, syscall.SIGKILL))
}
