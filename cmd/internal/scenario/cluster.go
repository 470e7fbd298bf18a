package scenario

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/outpost-edge/outpost/cmd/internal/hub"
	"github.com/outpost-edge/outpost/store/identity/sas"
)

// The commands of the hub cluster's scenarios. Name each node's background
// command and data directory after its node id (&n1&, $WORK/n1): then
// `clusterleader L` followed by `kill -KILL $L` kills the leader, and
// $WORK/$L, $L_ADDR and $L_RAFT restart it where it was.

// nodeready ID DIR: wait for the hub node's DIR/ready.json and export
// $ID_URL, $ID_ADDR (its API) and $ID_RAFT (its raft address, as
// advertised), and add ID to $NODES. The first node named also becomes
// $HUB (see hubready), with the owner connection string made from
// $OUTPOST_HUB_OWNER_KEY when the node was given that key.
func cmdNodeReady(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: nodeready ID DIR")
	}
	id, dir := args[0], ts.MkAbs(args[1])
	var r hub.Ready
	waitReadyFile(ts, dir, &r)
	if r.NodeID != id {
		ts.Fatalf("%s/ready.json is node %q's, not %q's", args[1], r.NodeID, id)
	}
	setNodeEnv(ts, id, r.URL, r.Raft)
	if !slices.Contains(clusterNodes(ts), id) {
		ts.Setenv("NODES", strings.TrimSpace(ts.Getenv("NODES")+" "+id))
	}
	if ts.Getenv("HUB") != "" {
		return
	}
	cs := ""
	if key := ts.Getenv("OUTPOST_HUB_OWNER_KEY"); key != "" {
		cs = fmt.Sprintf("HostName=%s;SharedAccessKeyName=owner;SharedAccessKey=%s", r.HostName, key)
	} else {
		data, err := os.ReadFile(filepath.Join(dir, "owner.connection-string"))
		ts.Check(err)
		cs = strings.TrimSpace(string(data))
	}
	ts.Setenv("OUTPOST_HUB_CONNECTION_STRING", cs)
	ts.Setenv("HUB_HOST", r.HostName)
	ts.Setenv("HUB_CA", r.CA)
	useNode(ts, id)
}

func setNodeEnv(ts *testscript.TestScript, id, url, raft string) {
	ts.Setenv(id+"_URL", url)
	ts.Setenv(id+"_ADDR", strings.TrimPrefix(strings.TrimPrefix(url, "http://"), "https://"))
	ts.Setenv(id+"_RAFT", raft)
}

func clusterNodes(ts *testscript.TestScript) []string { return strings.Fields(ts.Getenv("NODES")) }

// usenode ID: from now on $HUB, $HUB_ADDR and $OUTPOST_HUB_URL (what the
// CLI and the hub commands reach) are node ID's API.
func cmdUseNode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: usenode ID")
	}
	useNode(ts, args[0])
}

func useNode(ts *testscript.TestScript, id string) {
	url := ts.Getenv(id + "_URL")
	if url == "" {
		ts.Fatalf("no node %s: nodeready %s DIR first", id, id)
	}
	ts.Setenv("HUB", url)
	ts.Setenv("HUB_ADDR", ts.Getenv(id+"_ADDR"))
	ts.Setenv("OUTPOST_HUB_URL", url)
}

// freeport VAR: set $VAR to 127.0.0.1:PORT, a port free a moment ago (for
// a raft address a proxy must know before the node starts).
func cmdFreePort(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: freeport VAR")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	ts.Setenv(args[0], ln.Addr().String())
	ts.Check(ln.Close())
}

// member is a line of GET /cluster/members (cmd/internal/hub.Member).
type member = hub.Member

// members asks the node at url for the cluster's members.
func members(ts *testscript.TestScript, url string) ([]member, string) {
	code, data := hubGetAt(ts, url, "/cluster/members")
	var ms []member
	if code != 200 || json.Unmarshal(data, &ms) != nil {
		return nil, fmt.Sprintf("%d %s", code, data)
	}
	return ms, ""
}

// clusterready N: wait until N members of the cluster, asked through
// $HUB, answer, one Leader and the others Follower (members that are down
// may be listed too, as unreachable), and each of them names that leader
// in its own /cluster/status (so it forwards to it).
func cmdClusterReady(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: clusterready N")
	}
	n, err := strconv.Atoi(args[0])
	ts.Check(err)
	poll(ts, args[0]+" nodes, one leader", func() string {
		ms, bad := members(ts, ts.Getenv("HUB"))
		if bad != "" {
			return bad
		}
		leader, followers := "", 0
		for _, m := range ms {
			switch {
			case m.State == "Leader" && m.Leader:
				leader = m.ID
			case m.State == "Follower":
				followers++
			}
		}
		if leader == "" || followers != n-1 {
			return fmt.Sprintf("%+v", ms)
		}
		return allFollow(ts, ms, leader)
	})
}

// allFollow says "" when every member that answers names leader in its
// own /cluster/status.
func allFollow(ts *testscript.TestScript, ms []member, leader string) string {
	for _, m := range ms {
		if m.State == "unreachable" {
			continue
		}
		if m.API == "" {
			return "no API address recorded for " + m.ID
		}
		code, data := hubGetAt(ts, m.API, "/cluster/status")
		var s nodeStatus
		if code != 200 || json.Unmarshal(data, &s) != nil || s.Leader != leader {
			return fmt.Sprintf("%s: %d %s (the leader is %s)", m.ID, code, data, leader)
		}
	}
	return ""
}

// clusterleader VAR / clusterfollower VAR: set $VAR to the id of the
// leader (of a follower, the first by id), and $VAR_URL, $VAR_ADDR and
// $VAR_RAFT to its addresses. The cluster is asked through $HUB.
func cmdClusterLeader(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: clusterleader VAR")
	}
	pickMember(ts, args[0], true)
}

func cmdClusterFollower(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: clusterfollower VAR")
	}
	pickMember(ts, args[0], false)
}

func pickMember(ts *testscript.TestScript, v string, leader bool) {
	var got member
	poll(ts, map[bool]string{true: "a leader", false: "a follower"}[leader], func() string {
		ms, bad := members(ts, ts.Getenv("HUB"))
		if bad != "" {
			return bad
		}
		slices.SortFunc(ms, func(a, b member) int { return strings.Compare(a.ID, b.ID) })
		for _, m := range ms {
			if m.Leader == leader && (m.State == "Leader") == leader && m.API != "" {
				got = m
				return ""
			}
		}
		return fmt.Sprintf("%+v", ms)
	})
	ts.Setenv(v, got.ID)
	setNodeEnv(ts, v, got.API, got.Raft)
	fmt.Fprintf(ts.Stdout(), "%s\n", got.ID)
}

// nodeStatus is a node's GET /cluster/status.
type nodeStatus struct {
	ID                string
	Leader            string
	State             string
	CommitIndex       uint64
	AppliedIndex      uint64
	LastSnapshotIndex uint64
}

func statusOf(ts *testscript.TestScript, id string) (nodeStatus, string) {
	var s nodeStatus
	code, data := hubGetAt(ts, ts.Getenv(id+"_URL"), "/cluster/status")
	if code != 200 || json.Unmarshal(data, &s) != nil {
		return s, fmt.Sprintf("%s: %d %s", id, code, data)
	}
	return s, ""
}

// clustersynced [ID...]: wait until every node named (default $NODES)
// answers and has applied the log as far as the leader has: one leader
// among them, every appliedIndex equal to the leader's commitIndex, and
// every node's own event log (/healthz, answered locally) ending at the
// same seq.
func cmdClusterSynced(ts *testscript.TestScript, neg bool, args []string) {
	ids := args
	if len(ids) == 0 {
		ids = clusterNodes(ts)
	}
	if neg || len(ids) == 0 {
		ts.Fatalf("usage: clustersynced [ID...] (default $NODES)")
	}
	poll(ts, "nodes "+strings.Join(ids, " ")+" applied the leader's log", func() string {
		var all []nodeStatus
		var commit uint64
		leaders := 0
		for _, id := range ids {
			s, bad := statusOf(ts, id)
			if bad != "" {
				return bad
			}
			if s.State == "Leader" {
				leaders, commit = leaders+1, s.CommitIndex
			}
			all = append(all, s)
		}
		for _, s := range all {
			if leaders != 1 || s.AppliedIndex != commit {
				return fmt.Sprintf("%+v", all)
			}
		}
		return sameLastEvent(ts, ids)
	})
}

// sameLastEvent says "" when every node's own event log ends at the same
// seq.
func sameLastEvent(ts *testscript.TestScript, ids []string) string {
	var last []string
	same := true
	for i, id := range ids {
		code, data := hubGetAt(ts, ts.Getenv(id+"_URL"), "/healthz")
		var h struct{ Events uint64 }
		if code != 200 || json.Unmarshal(data, &h) != nil {
			return fmt.Sprintf("%s /healthz: %d %s", id, code, data)
		}
		last = append(last, strconv.FormatUint(h.Events, 10))
		same = same && last[i] == last[0]
	}
	if !same {
		return "the nodes' last event seqs differ: " + strings.Join(ids, " ") + " = " + strings.Join(last, " ")
	}
	return ""
}

// statField reads a numeric field of node ID's /cluster/status
// (appliedIndex, commitIndex, lastIndex, lastSnapshotIndex, term).
func statField(ts *testscript.TestScript, id, field string) (uint64, string) {
	code, data := hubGetAt(ts, ts.Getenv(id+"_URL"), "/cluster/status")
	var m map[string]any
	if code != 200 || json.Unmarshal(data, &m) != nil {
		return 0, fmt.Sprintf("%s: %d %s", id, code, data)
	}
	v, ok := m[field].(float64)
	if !ok {
		ts.Fatalf("node %s's /cluster/status has no number %q: %s", id, field, data)
	}
	return uint64(v), ""
}

// nodestat ID FIELD VAR: set $VAR to the numeric FIELD of node ID's
// /cluster/status (e.g. appliedIndex).
func cmdNodeStat(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: nodestat ID FIELD VAR")
	}
	v, bad := statField(ts, args[0], args[1])
	if bad != "" {
		ts.Fatalf("%s", bad)
	}
	ts.Setenv(args[2], strconv.FormatUint(v, 10))
}

// waitstat ID FIELD MIN: wait until the numeric FIELD of node ID's
// /cluster/status is at least MIN (a number, or A+B: e.g. $I+400).
func cmdWaitStat(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: waitstat ID FIELD MIN")
	}
	var min uint64
	for _, term := range strings.Split(args[2], "+") {
		n, err := strconv.ParseUint(term, 10, 64)
		ts.Check(err)
		min += n
	}
	poll(ts, fmt.Sprintf("node %s's %s >= %d", args[0], args[1], min), func() string {
		v, bad := statField(ts, args[0], args[1])
		if bad != "" || v >= min {
			return bad
		}
		return fmt.Sprintf("%s %d", args[1], v)
	})
}

// hubGetAt is hubGet at another base URL.
func hubGetAt(ts *testscript.TestScript, base, path string) (int, []byte) {
	prev := ts.Getenv("HUB")
	ts.Setenv("HUB", base)
	defer ts.Setenv("HUB", prev)
	return hubGet(ts, path)
}

// ownerToken is a SAS token of the owner connection string.
func ownerToken(ts *testscript.TestScript) string {
	cs, err := sas.ParseConnString(ts.Getenv("OUTPOST_HUB_CONNECTION_STRING"))
	ts.Check(err)
	return sas.NewToken(cs.Resource(), cs.SharedAccessKey, cs.SharedAccessKeyName, time.Now().Add(time.Hour))
}

// twinFlood is a background writer of twin patches (twinflood).
type twinFlood struct {
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	acked []string // the keys of the patches answered 200, in order
	fails int
	mark  int // len(acked) at the last twinflood wait
}

var twinFloods sync.Map // linkKey → *twinFlood

// twinflood start NAME DEVICE: PATCH the twin of DEVICE through $HUB (as
// `outpost twin patch` does) in the background, one new desired property
// k<i>=i a patch, the next one as soon as the last is answered (after a
// failure, 100 ms later). twinflood wait NAME N waits until N more
// patches were acknowledged since the start or the last wait. twinflood
// stop NAME ACKFILE stops it and writes the keys of the acknowledged
// patches (200) to ACKFILE.
func cmdTwinFlood(ts *testscript.TestScript, neg bool, args []string) {
	const usage = "usage: twinflood start NAME DEVICE | twinflood wait NAME N | twinflood stop NAME ACKFILE"
	if neg || len(args) != 3 {
		ts.Fatalf(usage)
	}
	key := linkKey(ts, args[1])
	switch args[0] {
	case "wait":
		v, ok := twinFloods.Load(key)
		n, err := strconv.Atoi(args[2])
		if !ok || err != nil {
			ts.Fatalf(usage)
		}
		v.(*twinFlood).wait(ts, n)
	case "start":
		f := &twinFlood{stop: make(chan struct{}), done: make(chan struct{})}
		if _, dup := twinFloods.LoadOrStore(key, f); dup {
			ts.Fatalf("twinflood %s is already started", args[1])
		}
		base, path, token := ts.Getenv("HUB"), "/twins/"+args[2], ownerToken(ts)
		go f.run(func(body string) (int, error) { return hubSend(base, path, token, body) })
		ts.Defer(func() { f.halt(); twinFloods.Delete(key) })
	case "stop":
		v, ok := twinFloods.LoadAndDelete(key)
		if !ok {
			ts.Fatalf("no twinflood %s", args[1])
		}
		f := v.(*twinFlood)
		f.halt()
		f.mu.Lock()
		defer f.mu.Unlock()
		fmt.Fprintf(ts.Stdout(), "%d patches acknowledged, %d failed\n", len(f.acked), f.fails)
		ts.Check(os.WriteFile(ts.MkAbs(args[2]), []byte(strings.Join(f.acked, "\n")+"\n"), 0o644))
	default:
		ts.Fatalf(usage)
	}
}

func (f *twinFlood) run(patch func(body string) (int, error)) {
	defer close(f.done)
	for i := 1; ; i++ {
		select {
		case <-f.stop:
			return
		default:
		}
		k := fmt.Sprintf("k%d", i)
		code, err := patch(fmt.Sprintf(`{"properties":{"desired":{%q:%d}}}`, k, i))
		f.mu.Lock()
		if err == nil && code == 200 {
			f.acked = append(f.acked, k)
		} else {
			f.fails++
		}
		f.mu.Unlock()
		if err == nil && code == 200 {
			continue
		}
		select {
		case <-f.stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (f *twinFlood) wait(ts *testscript.TestScript, n int) {
	f.mu.Lock()
	want := f.mark + n
	f.mu.Unlock()
	poll(ts, fmt.Sprintf("%d acknowledged twin patches", want), func() string {
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.acked) >= want {
			f.mark = len(f.acked)
			return ""
		}
		return fmt.Sprintf("%d acknowledged, %d failed", len(f.acked), f.fails)
	})
}

func (f *twinFlood) halt() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	<-f.done
}

// hubSend PATCHes body to base+path with the owner's token.
func hubSend(base, path, token, body string) (int, error) {
	req, err := http.NewRequest("PATCH", base+path, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", token)
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: 15 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// checknodetwins DEVICE ACKFILE: wait until the twin of DEVICE read at
// every node of $NODES is the same (tags, desired and reported properties)
// and holds every desired key of ACKFILE (from twinflood stop) with its
// value; prints how many keys it holds.
func cmdCheckNodeTwins(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: checknodetwins DEVICE ACKFILE")
	}
	acked := strings.Fields(ts.ReadFile(args[1]))
	if len(acked) == 0 {
		ts.Fatalf("%s: no acknowledged patch", args[1])
	}
	var held int
	poll(ts, "twin "+args[0]+" equal at every node, with every acknowledged patch", func() string {
		var first string
		for _, id := range clusterNodes(ts) {
			code, doc := hubGetAt(ts, ts.Getenv(id+"_URL"), "/twins/"+args[0])
			if code != 200 {
				return fmt.Sprintf("%s: %d %s", id, code, doc)
			}
			v := twinValues(doc)
			if first == "" {
				first = v
			} else if v != first {
				return fmt.Sprintf("%s: %.200s…, not %.200s…", id, v, first)
			}
		}
		var t struct{ Desired map[string]any }
		ts.Check(json.Unmarshal([]byte(first), &t))
		for _, k := range acked {
			if want, _ := strconv.Atoi(k[1:]); t.Desired[k] != float64(want) {
				return fmt.Sprintf("acknowledged patch %s=%d absent: %.300s…", k, want, first)
			}
		}
		held = len(t.Desired)
		return ""
	})
	fmt.Fprintf(ts.Stdout(), "%d acknowledged patches, %d desired properties, equal at %d nodes\n", len(acked), held, len(clusterNodes(ts)))
}

// noderead ID DEVICE KEY VALUE: a read of DEVICE's twin at node ID never
// serves a stale value: it fails (prints "refused CODE") or answers with
// desired property KEY equal to VALUE (a JSON value; prints "fresh").
func cmdNodeRead(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 4 {
		ts.Fatalf("usage: noderead ID DEVICE KEY VALUE")
	}
	url := ts.Getenv(args[0] + "_URL")
	if url == "" {
		ts.Fatalf("no node %s: nodeready %s DIR first", args[0], args[0])
	}
	code, doc := hubGetAt(ts, url, "/twins/"+args[1])
	if code != 200 {
		fmt.Fprintf(ts.Stdout(), "refused %d\n", code)
		return
	}
	var t struct {
		Properties struct{ Desired map[string]json.RawMessage }
	}
	ts.Check(json.Unmarshal(doc, &t))
	if got := string(t.Properties.Desired[args[2]]); got != args[3] {
		ts.Fatalf("a stale read at %s: desired %s is %s, the cluster acknowledged %s", args[0], args[2], got, args[3])
	}
	fmt.Fprintln(ts.Stdout(), "fresh")
}

// waitnode ID REGEXP: wait until node ID's own GET /cluster/status (JSON:
// state, leader, term, appliedIndex, lastSnapshotIndex…) matches REGEXP.
func cmdWaitNode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: waitnode ID REGEXP")
	}
	re, err := regexp.Compile(args[1])
	ts.Check(err)
	poll(ts, "node "+args[0]+" status ~ "+args[1], func() string {
		code, data := hubGetAt(ts, ts.Getenv(args[0]+"_URL"), "/cluster/status")
		if code == 200 && re.Match(data) {
			return ""
		}
		return fmt.Sprintf("%d %s", code, data)
	})
}
