package soakbench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/store/kv"
)

// sample is one look at the edge process, at some time since the load
// started.
type sample struct {
	at      time.Duration
	values  [numSeries]float64
	backlog int64 // messages in the edge's upstream queues (-1: unknown)
}

// The series sampled, in the order of sample.values.
const (
	anonMB = iota
	threads
	goroutines
	fds
	diskMB
	numSeries
)

// seriesNames are the metric names of the series: <name> is the mean,
// <name without the unit>_slope<unit>/h the slope per hour.
var seriesNames = [numSeries]string{"anon_MB", "threads", "goroutines", "fds", "disk_MB"}

// slopeName is the name of a series' slope per hour: anon_MB gives
// anon_slope_MB/h, fds gives fds_slope/h.
func slopeName(series string) string {
	if base, unit, ok := strings.Cut(series, "_"); ok {
		return base + "_slope_" + unit + "/h"
	}
	return series + "_slope/h"
}

// takeSample reads the anonymous memory and threads of pid, its open file
// descriptors and the blocks its data directory occupies.
func takeSample(pid int, dataDir string, at time.Duration) (sample, error) {
	s := sample{at: at}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read status of %d: %w", pid, err)
	}
	anonKB, thr, err := parseStatus(string(status))
	if err != nil {
		return s, err
	}
	n, err := countFDs(pid)
	if err != nil {
		return s, err
	}
	disk, err := kv.DiskUsage(dataDir)
	if err != nil {
		return s, fmt.Errorf("disk usage of %s: %w", dataDir, err)
	}
	s.values[anonMB] = float64(anonKB) / 1024
	s.values[threads] = float64(thr)
	s.values[fds] = float64(n)
	s.values[diskMB] = float64(disk) / (1 << 20)
	return s, nil
}

// parseStatus takes RssAnon (kB) and Threads from the text of
// /proc/PID/status; both must be there.
func parseStatus(text string) (anonKB, threads int64, err error) {
	found := 0
	for line := range strings.Lines(text) {
		key, val, ok := strings.Cut(line, ":")
		if !ok || (key != "RssAnon" && key != "Threads") {
			continue
		}
		f := strings.Fields(val)
		if len(f) == 0 {
			return 0, 0, fmt.Errorf("/proc status: %s has no value", key)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc status: %s: %w", key, err)
		}
		if key == "RssAnon" {
			anonKB = n
		} else {
			threads = n
		}
		found++
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("/proc status: RssAnon or Threads missing")
	}
	return anonKB, threads, nil
}

// countFDs counts the open file descriptors of pid.
func countFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, fmt.Errorf("list fds of %d: %w", pid, err)
	}
	return len(ents), nil
}

// fit returns the mean of ys and the least-squares slope of ys over xs
// (0 with fewer than two distinct xs).
func fit(xs, ys []float64) (mean, slope float64) {
	n := float64(len(xs))
	if n == 0 {
		return 0, 0
	}
	var sx, sy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
	}
	mx, my := sx/n, sy/n
	var sxy, sxx float64
	for i := range xs {
		sxy += (xs[i] - mx) * (ys[i] - my)
		sxx += (xs[i] - mx) * (xs[i] - mx)
	}
	if sxx == 0 {
		return my, 0
	}
	return my, sxy / sxx
}

// trend is one series after the warm-up: its mean, its slope per hour,
// and its mean over each whole cycle (for the log).
type trend struct {
	mean, perHour float64
	perCycle      []float64
}

// trends fits every series over the samples from warmup to the end of the
// last whole cycle. The freeze makes every series a sawtooth with the
// cycle's period, which biases a fit over raw samples by where the window
// cuts the teeth; so with two whole cycles or more the slope is fitted
// over the mean of each cycle instead (a periodic part adds the same to
// every cycle's mean). With fewer, over the raw samples (biased).
func trends(samples []sample, warmup, cycle, end time.Duration) (out [numSeries]trend, cycles int) {
	cycles = int((end - warmup) / cycle)
	stop := end
	if cycles >= 1 {
		stop = warmup + time.Duration(cycles)*cycle
	}
	var in []sample
	for _, s := range samples {
		if s.at >= warmup && s.at < stop {
			in = append(in, s)
		}
	}
	for k := range numSeries {
		xs, ys := make([]float64, len(in)), make([]float64, len(in))
		for i, s := range in {
			xs[i], ys[i] = s.at.Hours(), s.values[k]
		}
		mean, slope := fit(xs, ys)
		cx, cy := cycleMeans(in, k, warmup, cycle)
		if cycles >= 2 {
			_, slope = fit(cx, cy)
		}
		out[k] = trend{mean, slope, cy}
	}
	return out, cycles
}

// cycleMeans averages series k over each cycle from warmup on: one point
// per cycle, at its middle (hours).
func cycleMeans(in []sample, k int, warmup, cycle time.Duration) (xs, ys []float64) {
	sum, cnt := map[int]float64{}, map[int]int{}
	last := -1
	for _, s := range in {
		c := int((s.at - warmup) / cycle)
		sum[c] += s.values[k]
		cnt[c]++
		last = max(last, c)
	}
	for c := 0; c <= last; c++ {
		if cnt[c] == 0 {
			continue
		}
		xs = append(xs, (warmup + time.Duration(c)*cycle + cycle/2).Hours())
		ys = append(ys, sum[c]/float64(cnt[c]))
	}
	return xs, ys
}
