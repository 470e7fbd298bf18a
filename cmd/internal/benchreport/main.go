// Command benchreport turns `go test -bench` output (stdin) into the
// markdown of docs/benchmarks.md: one table per package, the median of
// repeated runs for every metric, the machine and the commands.
//
// usage: go test -bench . -count 3 ./... | go run ./cmd/internal/benchreport -cmd "…" > docs/benchmarks.md
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

type result struct {
	pkg, name string
	metrics   map[string][]float64 // unit → values of each run
	order     []string
}

func main() {
	cmds := flag.String("cmd", "", "the commands that produced the input, for the report")
	notes := flag.String("notes", "", "markdown file appended after the tables")
	flag.Parse()
	results := parse(os.Stdin)
	addRatios(results)
	if len(results) == 0 {
		fmt.Fprintln(os.Stderr, "error: no benchmark lines on stdin")
		os.Exit(1)
	}
	write(os.Stdout, results, *cmds)
	if *notes != "" {
		b, err := os.ReadFile(*notes)
		if err != nil {
			fmt.Fprintf(os.Stderr, "error: %v\n", err)
			os.Exit(1)
		}
		os.Stdout.Write(b)
	}
}

func parse(r io.Reader) []*result {
	var out []*result
	byKey := map[string]*result{}
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimPrefix(p, "github.com/outpost-edge/outpost/")
			continue
		}
		if strings.HasPrefix(line, "{") {
			out = addLoad(out, byKey, line)
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := trimProcs(strings.TrimPrefix(f[0], "Benchmark"))
		key := pkg + " " + name
		res := byKey[key]
		if res == nil {
			res = &result{pkg: pkg, name: name, metrics: map[string][]float64{}}
			byKey[key] = res
			out = append(out, res)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			unit := f[i+1]
			if _, seen := res.metrics[unit]; !seen {
				res.order = append(res.order, unit)
			}
			res.metrics[unit] = append(res.metrics[unit], v)
		}
	}
	return out
}

// loadPkg is the section of mqttload runs (JSON lines from .ci/bench-broker).
const loadPkg = "broker: Outpost edge next to Mosquitto 2 (mqttload)"

// loadMetrics are the mqttload fields reported, in order.
var loadMetrics = []string{"msgs_per_s", "puback_p50_ms", "puback_p99_ms", "broker_us_per_msg", "broker_cpu_pct", "broker_rss_mb", "broker_rss_peak_mb", "delivered"}

// m2mPkg is the section of the module-to-module runs: the lines of the
// receiving mqttload (-receive), module b, one per run; they have no
// Mosquitto anchor (the targets are absolute: bench-notes.md).
const m2mPkg = "broker: module a → route → module b through outpost edge (two mqttload processes)"

// receiveMetrics are the fields of a receiver's line, in order, and the
// names the table gives them.
var receiveMetrics = [][2]string{
	{"delivered_per_s", "routed_msgs/s"}, {"latency_p50_ms", "p50_ms"}, {"latency_p90_ms", "p90_ms"},
	{"latency_p99_ms", "p99_ms"}, {"latency_max_ms", "max_ms"}, {"broker_us_per_msg", "broker_us_per_msg"},
	{"broker_cpu_pct", "broker_cpu_pct"}, {"broker_rss_peak_mb", "broker_rss_peak_mb"},
}

func addLoad(out []*result, byKey map[string]*result, line string) []*result {
	var m map[string]any
	if json.Unmarshal([]byte(line), &m) != nil {
		return out
	}
	label, _ := m["label"].(string)
	pkg, metrics := loadPkg, make([][2]string, len(loadMetrics))
	for i, k := range loadMetrics {
		metrics[i] = [2]string{k, k}
	}
	if _, ok := m["delivered_per_s"]; ok {
		pkg, metrics = m2mPkg, receiveMetrics
	}
	key := pkg + " " + label
	res := byKey[key]
	if res == nil {
		res = &result{pkg: pkg, name: label, metrics: map[string][]float64{}}
		byKey[key] = res
		out = append(out, res)
	}
	for _, k := range metrics {
		if v, ok := m[k[0]].(float64); ok {
			if _, seen := res.metrics[k[1]]; !seen {
				res.order = append(res.order, k[1])
			}
			res.metrics[k[1]] = append(res.metrics[k[1]], v)
		}
	}
	return out
}

// sameAnchor names cases whose Mosquitto load is another case's, measured
// once there (.ci/bench-broker): generic devices on free topics are held
// to the very figure the IoT-topic ingest is, not to a second sample of it.
var sameAnchor = map[string]string{"generic-10pub": "ingest-10pub", "budget64-10pub": "ingest-10pub"}

// constrained names cases that run the edge under a memory budget: each is
// also given its throughput as a multiple of the same edge unconstrained
// in the same rounds (x_unconstrained; TARGETS.md: ≥ 0.8 at 64 MiB).
var constrained = map[string]string{"budget64-10pub": "ingest-10pub"}

// addRatios gives every "<case>/outpost-…" run its throughput as a multiple
// of "<case>/mosquitto" (or its sameAnchor's) measured in the same rounds,
// and every budgeted go-bench run its budgetRatio.
func addRatios(results []*result) {
	addBudgetRatios(results)
	base, bare := map[string]*result{}, map[string]*result{}
	for _, r := range results {
		if c, ok := strings.CutSuffix(r.name, "/mosquitto"); ok && r.pkg == loadPkg {
			base[c] = r
		}
		if c, ok := strings.CutSuffix(r.name, "/mosquitto-bare"); ok && r.pkg == loadPkg {
			bare[c] = r
		}
	}
	byName := map[string]*result{}
	for _, r := range results {
		if r.pkg == loadPkg {
			byName[r.name] = r
		}
	}
	for _, r := range results {
		c, dur, ok := strings.Cut(r.name, "/outpost-")
		if u := byName[constrained[c]+"/outpost-"+dur]; ok && u != nil && len(r.metrics["msgs_per_s"]) > 0 && len(u.metrics["msgs_per_s"]) > 0 {
			r.order = append(r.order, "x_unconstrained")
			r.metrics["x_unconstrained"] = []float64{median(r.metrics["msgs_per_s"]) / median(u.metrics["msgs_per_s"])}
		}
		b := base[c]
		if b == nil {
			b = base[sameAnchor[c]]
		}
		if !ok || b == nil || len(r.metrics["msgs_per_s"]) == 0 || len(b.metrics["msgs_per_s"]) == 0 {
			continue
		}
		x := median(r.metrics["msgs_per_s"]) / median(b.metrics["msgs_per_s"])
		r.order = append(r.order, "x_mosquitto")
		r.metrics["x_mosquitto"] = []float64{x}
		// Mosquitto with no subscriber, in the same rounds (x_bare; target
		// ≥ 1.0 in process durability).
		if nb := bare[c]; nb != nil && len(nb.metrics["msgs_per_s"]) > 0 {
			r.order = append(r.order, "x_bare")
			r.metrics["x_bare"] = []float64{median(r.metrics["msgs_per_s"]) / median(nb.metrics["msgs_per_s"])}
		}
	}
}

// budgetRatio: a go-bench result "<bench>/budget64" (.ci/bench-backlog: the
// edge restarted in a 64 MiB memory cgroup) is also given its metric as a
// multiple of the same metric of "<bench>/unconstrained" in the same
// package, as x_unconstrained (TARGETS.md: ≥ 0.8).
var budgetRatio = map[string]struct{ anchor, metric string }{
	"budget64": {"unconstrained", "drain_msgs/s"},
}

func addBudgetRatios(results []*result) {
	byKey := map[string]*result{}
	for _, r := range results {
		byKey[r.pkg+" "+r.name] = r
	}
	for _, r := range results {
		i := strings.LastIndex(r.name, "/")
		if r.pkg == loadPkg || i < 0 {
			continue
		}
		b, ok := budgetRatio[r.name[i+1:]]
		u := byKey[r.pkg+" "+r.name[:i+1]+b.anchor]
		if !ok || u == nil || len(r.metrics[b.metric]) == 0 || len(u.metrics[b.metric]) == 0 || median(u.metrics[b.metric]) == 0 {
			continue
		}
		r.order = append(r.order, "x_unconstrained")
		r.metrics["x_unconstrained"] = []float64{median(r.metrics[b.metric]) / median(u.metrics[b.metric])}
	}
}

func trimProcs(name string) string {
	if i := strings.LastIndex(name, "-"); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			return name[:i]
		}
	}
	return name
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func write(w io.Writer, results []*result, cmds string) {
	fmt.Fprintf(w, "# Benchmarks\n\nWritten by `make bench` on %s. Each figure is the median of the repeated runs,\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "with [min–max] when there were several. The machine is shared and noisy: treat absolute figures as ±30 %%.\n")
	fmt.Fprintf(w, "\n## Machine\n\n%s\n", machine())
	if cmds != "" {
		fmt.Fprintf(w, "## Commands\n\n```\n%s\n```\n\n", strings.TrimSpace(cmds))
	}
	pkg := ""
	for _, r := range results {
		if r.pkg != pkg {
			pkg = r.pkg
			fmt.Fprintf(w, "\n## %s\n\n| benchmark | runs | metrics (median) |\n|---|---|---|\n", pkg)
		}
		var ms []string
		for _, u := range r.order {
			if u == "B/op" || u == "allocs/op" {
				continue
			}
			ms = append(ms, fmt.Sprintf("%s %s", spread(r.metrics[u]), u))
		}
		fmt.Fprintf(w, "| %s | %d | %s |\n", r.name, len(r.metrics[r.order[0]]), strings.Join(ms, ", "))
	}
	fmt.Fprintln(w)
}

// spread is "median" or, for several runs, "median [min–max]".
func spread(v []float64) string {
	if len(v) == 1 {
		return format(v[0])
	}
	lo, hi := slices.Min(v), slices.Max(v)
	return fmt.Sprintf("%s [%s–%s]", format(median(v)), format(lo), format(hi))
}

func format(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		mem = strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1] + " kB RAM"
	}
	kernel, _ := exec.Command("uname", "-sr").Output()
	return fmt.Sprintf("- %d CPUs: %s\n- %s\n- %s, %s/%s\n- %s\n", runtime.NumCPU(), cpu, mem, runtime.Version(), runtime.GOOS, runtime.GOARCH, strings.TrimSpace(string(kernel)))
}
