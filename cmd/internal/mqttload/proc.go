package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// Linux exports 100 to user space on every architecture Outpost targets;
// reading sysconf(_SC_CLK_TCK) would need cgo.
const clockTicks = 100

// procSample is one reading of a process's CPU time and memory.
type procSample struct {
	at    time.Time
	ticks uint64 // utime + stime, in clockTicks
	rssKB uint64 // VmRSS
	hwmKB uint64 // VmHWM: peak RSS over the process's life
}

func (s procSample) cpu() time.Duration {
	return time.Duration(s.ticks) * time.Second / clockTicks
}

func readProc(pid int) (procSample, error) {
	s := procSample{at: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("read broker stat: %w", err)
	}
	if s.ticks, err = parseStatTicks(stat); err != nil {
		return s, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read broker status: %w", err)
	}
	s.rssKB, s.hwmKB = parseStatusKB(status, "VmRSS:"), parseStatusKB(status, "VmHWM:")
	return s, nil
}

// parseStatTicks returns utime+stime (fields 14 and 15). The command name
// (field 2) is in parentheses and may hold spaces and ')', so fields are
// counted from the last ')'.
func parseStatTicks(stat []byte) (uint64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("no ')' in %q", stat)
	}
	f := strings.Fields(string(stat[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want ≥ 13", len(f))
	}
	utime, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime: %w", err)
	}
	stime, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime: %w", err)
	}
	return utime + stime, nil
}

// parseStatusKB returns the kB value of a /proc/<pid>/status line such as
// "VmRSS:	    9012 kB", or 0 when the key is absent (kernel threads).
func parseStatusKB(status []byte, key string) uint64 {
	for line := range strings.Lines(string(status)) {
		rest, ok := strings.CutPrefix(line, key)
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0
		}
		v, _ := strconv.ParseUint(f[0], 10, 64)
		return v
	}
	return 0
}

// rssSampler follows a process's VmRSS every interval and keeps the peak.
type rssSampler struct {
	pid      int
	stop     chan struct{}
	done     chan struct{}
	peakKB   uint64
	firstErr error
}

func startRSSSampler(pid int, every time.Duration) *rssSampler {
	r := &rssSampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go r.loop(every)
	return r
}

func (r *rssSampler) loop(every time.Duration) {
	defer close(r.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			s, err := readProc(r.pid)
			if err != nil {
				if r.firstErr == nil {
					r.firstErr = err
				}
				continue
			}
			r.peakKB = max(r.peakKB, s.rssKB)
		}
	}
}

// Stop ends sampling and returns the peak VmRSS seen and the first error.
func (r *rssSampler) Stop() (peakKB uint64, err error) {
	close(r.stop)
	<-r.done
	return r.peakKB, r.firstErr
}
