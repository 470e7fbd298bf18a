package soakbench

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestFit(t *testing.T) {
	for _, c := range []struct {
		name        string
		xs, ys      []float64
		mean, slope float64
	}{
		{"line", []float64{0, 1, 2, 3}, []float64{3, 5, 7, 9}, 6, 2},
		{"flat", []float64{0, 1, 2}, []float64{4, 4, 4}, 4, 0},
		{"falling noisy", []float64{0, 1, 2, 3}, []float64{1, 0, -1.5, -2.5}, -0.75, -1.2},
		{"one x", []float64{5, 5}, []float64{1, 3}, 2, 0},
		{"empty", nil, nil, 0, 0},
	} {
		mean, slope := fit(c.xs, c.ys)
		if math.Abs(mean-c.mean) > 1e-9 || math.Abs(slope-c.slope) > 1e-9 {
			t.Errorf("%s: fit = mean %g slope %g, want %g %g", c.name, mean, slope, c.mean, c.slope)
		}
	}
}

// sawtooth makes samples every 5 s for d: a ramp within each 60 s cycle
// (what a freeze does to the queue) on top of a leak of perHour.
func sawtooth(d time.Duration, perHour float64) []sample {
	var out []sample
	for at := time.Duration(0); at < d; at += 5 * time.Second {
		var s sample
		s.at = at
		for k := range numSeries {
			s.values[k] = 50 + float64(at%time.Minute)/float64(time.Second) + perHour*at.Hours()
		}
		out = append(out, s)
	}
	return out
}

func TestTrendsCancelTheCycle(t *testing.T) {
	for _, leak := range []float64{0, 120} {
		got, cycles := trends(sawtooth(10*time.Minute, leak), 2*time.Minute, time.Minute, 10*time.Minute)
		if cycles != 8 {
			t.Fatalf("cycles = %d, want 8", cycles)
		}
		for k, tr := range got {
			if math.Abs(tr.perHour-leak) > 1e-6 {
				t.Errorf("leak %g/h: %s slope %g/h", leak, seriesNames[k], tr.perHour)
			}
		}
	}
}

func TestTrendsWindow(t *testing.T) {
	s := sawtooth(3*time.Minute, 0)
	s = append(s, sample{at: 3 * time.Minute, values: [numSeries]float64{1e6, 1e6, 1e6, 1e6}}) // past the last whole cycle
	got, cycles := trends(s, time.Minute, time.Minute, 3*time.Minute+2*time.Second)
	if cycles != 2 {
		t.Fatalf("cycles = %d, want 2", cycles)
	}
	if want := 50 + 27.5; math.Abs(got[anonMB].mean-want) > 1e-9 {
		t.Errorf("mean %g, want %g (the samples of whole cycles after warm-up only)", got[anonMB].mean, want)
	}
}

func TestParseStatus(t *testing.T) {
	text := "Name:\toutpost\nVmRSS:\t   90000 kB\nRssAnon:\t   51200 kB\nRssFile:\t   38800 kB\nThreads:\t12\n"
	anon, thr, err := parseStatus(text)
	if err != nil || anon != 51200 || thr != 12 {
		t.Fatalf("parseStatus = %d kB, %d threads, %v; want 51200, 12", anon, thr, err)
	}
	for _, bad := range []string{"VmRSS:\t1 kB\nThreads:\t3\n", "RssAnon:\tx kB\nThreads:\t3\n", "RssAnon:\nThreads:\t3\n"} {
		if _, _, err := parseStatus(bad); err == nil {
			t.Errorf("parseStatus(%q): no error", bad)
		}
	}
}

func TestSampleSelf(t *testing.T) {
	dir := t.TempDir()
	before, err := takeSample(os.Getpid(), dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 20); err != nil { // sparse: the hole occupies nothing
		t.Fatal(err)
	}
	after, err := takeSample(os.Getpid(), dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if d := after.values[fds] - before.values[fds]; d < 1 {
		t.Errorf("fds %g → %g with a file opened", before.values[fds], after.values[fds])
	}
	if d := after.values[diskMB] - before.values[diskMB]; d < 0.9 || d > 2 {
		t.Errorf("disk grew %g MB for 1 MB written in a 64 MB sparse file", d)
	}
	if after.values[anonMB] <= 0 || after.values[threads] < 1 {
		t.Errorf("anon %g MB, %g threads", after.values[anonMB], after.values[threads])
	}
}

func TestSlopeName(t *testing.T) {
	for in, want := range map[string]string{"anon_MB": "anon_slope_MB/h", "fds": "fds_slope/h", "disk_MB": "disk_slope_MB/h"} {
		if got := slopeName(in); got != want {
			t.Errorf("slopeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWarmup(t *testing.T) {
	for d, want := range map[time.Duration]time.Duration{
		10 * time.Minute: 2 * time.Minute, // 20 %, at most 2 minutes
		24 * time.Hour:   2 * time.Minute,
		3 * time.Minute:  time.Minute, // 36 s, rounded up to a cycle
		time.Minute:      12 * time.Second,
		90 * time.Second: 18 * time.Second, // a whole minute would leave less than a cycle
	} {
		if got := warmupOf(d); got != want {
			t.Errorf("warmupOf(%s) = %s, want %s", d, got, want)
		}
	}
}
