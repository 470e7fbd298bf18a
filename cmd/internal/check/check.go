// Package check is `outpost edge check`: diagnostics of an edge as
// `iotedge check` gives them, one finding per line with what to do. It
// works whether or not the edge runs: a running edge is read through its
// local API (found from the data directory's ready.json), one that is not
// through its data directory and configuration. It makes one
// authenticated request to the hub with the edge's key when it has the
// key. It starts no goroutines.
package check

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/edge"
	"github.com/outpost-edge/outpost/cmd/internal/localapi"
	"github.com/outpost-edge/outpost/store/identity/sas"
)

// Level of a finding.
type Level string

// The levels, from good to bad.
const (
	OK    Level = "ok"
	Warn  Level = "warn"
	Error Level = "error"
)

// Finding is one result: what was checked, what was found, what to do.
type Finding struct {
	Check   string `json:"check"`
	Level   Level  `json:"level"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

// Options say which edge to check.
type Options struct {
	DataDir string // the edge's data directory ("": unknown)
	API     string // the running edge's local API address ("": from ready.json)
	// Config is the edge's configuration as its flags or --config give it
	// (the check reads listeners, certificate files, the hub URL and CA);
	// a running edge's ready.json fills in what is empty.
	Config edge.Config
	// ConnectionString is the edge's, for the credentials check (""
	// without: the running edge's link state stands in).
	ConnectionString string
	Client           *http.Client // to the hub; default: one with the hub CA
	Now              func() time.Time
	// Expiring is how long before its expiry a certificate is warned about
	// (default 30 days).
	Expiring time.Duration
}

// run is one check's state.
type run struct {
	opts     Options
	ctx      context.Context
	ready    *edge.Ready      // nil: the edge does not run
	status   *localapi.Status // the running edge's status
	cs       *sas.ConnString  // parsed ConnectionString
	welcome  *helloResult     // the hub's answer to the check's hello
	findings []Finding
}

func (r *run) add(check string, level Level, msg, fix string) {
	r.findings = append(r.findings, Finding{Check: check, Level: level, Message: msg, Fix: fix})
}

// Run checks the edge and returns the findings in order.
func Run(ctx context.Context, opts Options) []Finding {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Expiring <= 0 {
		opts.Expiring = 30 * 24 * time.Hour
	}
	r := &run{opts: opts, ctx: ctx}
	r.checkRunning()
	r.checkConfig()
	r.checkCerts()
	r.checkHub()
	r.checkClock()
	r.checkDisk()
	r.checkPorts()
	r.checkImages()
	r.checkIdentity()
	return r.findings
}

// Failed reports whether any finding is an error.
func Failed(fs []Finding) bool {
	for _, f := range fs {
		if f.Level == Error {
			return true
		}
	}
	return false
}

// Print writes the findings one per line: ✓ ok, ‼ warn, × error, the check,
// what was found and what to do; and a summary line.
func Print(w io.Writer, fs []Finding) {
	n := map[Level]int{}
	for _, f := range fs {
		n[f.Level]++
		sym := map[Level]string{OK: "✓", Warn: "‼", Error: "×"}[f.Level]
		line := fmt.Sprintf("%s %s: %s", sym, f.Check, f.Message)
		if f.Fix != "" {
			line += " — " + f.Fix
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "\n%d ok, %d warnings, %d errors\n", n[OK], n[Warn], n[Error])
}

// PrintJSON writes the findings as a JSON array.
func PrintJSON(w io.Writer, fs []Finding) error {
	if fs == nil {
		fs = []Finding{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(fs)
}

// checkRunning finds the running edge: ready.json in the data directory
// (its process alive) or --api, and reads its status.
func (r *run) checkRunning() {
	dir := r.opts.DataDir
	if dir != "" {
		if rd, err := readReady(dir); err == nil && alive(rd.PID) {
			r.ready = &rd
		}
	}
	addr := r.opts.API
	if addr == "" && r.ready != nil {
		addr = r.ready.API
	}
	if addr != "" {
		st, err := localapi.FetchStatus(addr)
		if err == nil {
			r.status = &st
		} else if r.ready != nil || r.opts.API != "" {
			r.add("edge", Error, fmt.Sprintf("the local API at %s does not answer: %v", addr, err),
				"is the edge hung? see its log; restart it")
			return
		}
	}
	switch {
	case r.status != nil && r.ready != nil:
		r.add("edge", OK, fmt.Sprintf("edge %s runs (pid %d), local API at %s", r.status.DeviceID, r.ready.PID, addr), "")
	case r.status != nil:
		r.add("edge", OK, fmt.Sprintf("edge %s answers at %s", r.status.DeviceID, addr), "")
	case dir == "":
		r.add("edge", Warn, "no data directory given and no edge answers", "pass --data DIR (or --config FILE) to check an edge")
	case !exists(dir):
		// Most often a mistyped --data: the checks below would pass on
		// the nearest parent directory that exists.
		r.add("edge", Warn, fmt.Sprintf("the edge is not running and its data directory %s does not exist (the edge makes it at its first start)", dir),
			"check --data: an edge that ran before has its ready.json and queues there")
	default:
		r.add("edge", Warn, fmt.Sprintf("the edge with data directory %s is not running: the checks below read its data directory and configuration", dir),
			"start it: outpost edge --data "+dir+" … (or --config FILE)")
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func readReady(dir string) (edge.Ready, error) {
	var rd edge.Ready
	data, err := os.ReadFile(filepath.Join(dir, "ready.json"))
	if err == nil {
		err = json.Unmarshal(data, &rd)
	}
	return rd, err
}

// alive reports whether a process with pid exists (signal 0).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

// cfg is the configuration with what the running edge recorded filled in.
func (r *run) cfg() edge.Config {
	c := r.opts.Config
	if rd := r.ready; rd != nil {
		fill := func(dst *string, v string) {
			if *dst == "" {
				*dst = v
			}
		}
		fill(&c.HubURL, rd.HubURL)
		fill(&c.HubCA, rd.HubCA)
		fill(&c.ClientCA, rd.ClientCA)
		fill(&c.TLSCert, rd.TLSCert)
		fill(&c.TLSKey, rd.TLSKey)
	}
	return c
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func join(parts []string) string { return strings.Join(parts, ", ") }
