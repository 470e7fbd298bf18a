package membudget

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
)

func files(kv ...string) fstest.MapFS {
	m := fstest.MapFS{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = &fstest.MapFile{Data: []byte(kv[i+1])}
	}
	return m
}

const (
	v2Self = "0::/system.slice/outpost-edge.service\n"
	v2Dir  = "sys/fs/cgroup/system.slice/outpost-edge.service/"
	v1Self = "12:pids:/user.slice\n5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n0::/\n"
	v1Dir  = "sys/fs/cgroup/memory/docker/abc/"
)

// Detect finds the cgroup's memory limit in v2 and v1 trees, takes the
// tightest of the cgroup and its ancestors, and reads "no limit" in each
// form as no budget.
func TestDetect(t *testing.T) {
	for _, c := range []struct {
		name string
		fsys fstest.MapFS
		want Budget
	}{
		{"v2 limit", files("proc/self/cgroup", v2Self, v2Dir+"memory.max", "67108864\n", v2Dir+"memory.high", "max\n"),
			Budget{64 << 20, "cgroup v2 /" + v2Dir + "memory.max"}},
		{"v2 max is none", files("proc/self/cgroup", v2Self, v2Dir+"memory.max", "max\n", v2Dir+"memory.high", "max\n"), Budget{}},
		{"v2 memory.high below memory.max", files("proc/self/cgroup", v2Self, v2Dir+"memory.max", "134217728\n", v2Dir+"memory.high", "100663296\n"),
			Budget{96 << 20, "cgroup v2 /" + v2Dir + "memory.high"}},
		{"v2 a parent's limit binds", files("proc/self/cgroup", v2Self, v2Dir+"memory.max", "max\n", "sys/fs/cgroup/system.slice/memory.max", "536870912\n"),
			Budget{512 << 20, "cgroup v2 /sys/fs/cgroup/system.slice/memory.max"}},
		{"v2 the child's is tighter", files("proc/self/cgroup", v2Self, v2Dir+"memory.max", "67108864", "sys/fs/cgroup/system.slice/memory.max", "536870912"),
			Budget{64 << 20, "cgroup v2 /" + v2Dir + "memory.max"}},
		{"v2 container: its cgroup at the root of the mount", files("proc/self/cgroup", "0::/\n", "sys/fs/cgroup/memory.max", "268435456\n"),
			Budget{256 << 20, "cgroup v2 /sys/fs/cgroup/memory.max"}},
		{"v2 no limit files (root cgroup, or no memory controller)", files("proc/self/cgroup", v2Self), Budget{}},
		{"v1 limit", files("proc/self/cgroup", v1Self, v1Dir+"memory.limit_in_bytes", "67108864\n"),
			Budget{64 << 20, "cgroup v1 /" + v1Dir + "memory.limit_in_bytes"}},
		{"v1 huge value is none", files("proc/self/cgroup", v1Self, v1Dir+"memory.limit_in_bytes", "9223372036854771712\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n"), Budget{}},
		{"v1 container without a cgroup namespace: its limit at the mount's root", files("proc/self/cgroup", v1Self,
			"sys/fs/cgroup/memory/memory.limit_in_bytes", "134217728\n"), Budget{128 << 20, "cgroup v1 /sys/fs/cgroup/memory/memory.limit_in_bytes"}},
		{"hybrid: v2 without memory, v1 with", files("proc/self/cgroup", v1Self, v1Dir+"memory.limit_in_bytes", "100000000"),
			Budget{100000000, "cgroup v1 /" + v1Dir + "memory.limit_in_bytes"}},
		{"no memory controller line", files("proc/self/cgroup", "3:cpu:/x\n"), Budget{}},
		{"not Linux: no /proc/self/cgroup", files(), Budget{}},
		{"garbage lines are skipped", files("proc/self/cgroup", "nonsense\n\n"), Budget{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Detect(c.fsys)
			if err != nil || got != c.want {
				t.Errorf("Detect = %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}

// A limit file that does not hold a number is an error naming it, not a
// silent "no budget".
func TestDetectMalformed(t *testing.T) {
	for _, c := range []struct {
		name, file string
		fsys       fstest.MapFS
	}{
		{"v2 text", v2Dir + "memory.max", files("proc/self/cgroup", v2Self, v2Dir+"memory.max", "lots\n")},
		{"v2 negative", v2Dir + "memory.high", files("proc/self/cgroup", v2Self, v2Dir+"memory.high", "-1\n")},
		{"v1 empty", v1Dir + "memory.limit_in_bytes", files("proc/self/cgroup", v1Self, v1Dir+"memory.limit_in_bytes", "")},
		{"v2 unreadable (a directory)", v2Dir + "memory.max", fstest.MapFS{"proc/self/cgroup": {Data: []byte(v2Self)},
			v2Dir + "memory.max": {Mode: fs.ModeDir}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Detect(c.fsys)
			if !errors.Is(err, ErrCgroup) || !strings.Contains(err.Error(), "/"+c.file) {
				t.Errorf("Detect = %+v, %v; want ErrCgroup naming /%s", got, err, c.file)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	for _, b := range []Budget{{}, {Floor, "--memory-budget"}, {1 << 30, "cgroup v2 /sys/fs/cgroup/memory.max"}} {
		if err := Check(b); err != nil {
			t.Errorf("Check(%+v) = %v, want nil", b, err)
		}
	}
	err := Check(Budget{Floor - 1, "cgroup v2 /sys/fs/cgroup/memory.max"})
	if !errors.Is(err, ErrBelowFloor) || !strings.Contains(err.Error(), "at least 32 MiB") || !strings.Contains(err.Error(), "memory.max") {
		t.Errorf("Check below the floor = %v, want ErrBelowFloor saying the minimum and the source", err)
	}
}

// FuzzDetect: whatever the cgroup files hold, Detect answers a budget with
// its source or an ErrCgroup, and never panics.
func FuzzDetect(f *testing.F) {
	f.Add(v2Self, "67108864\n")
	f.Add(v1Self, "9223372036854771712")
	f.Add("0::/../..\n", "max")
	f.Add("4:memory:\n", "18446744073709551615")
	f.Fuzz(func(t *testing.T, self, limit string) {
		fsys := files("proc/self/cgroup", self, v2Dir+"memory.max", limit, v1Dir+"memory.limit_in_bytes", limit,
			"sys/fs/cgroup/memory.max", limit)
		b, err := Detect(fsys)
		switch {
		case err != nil && !errors.Is(err, ErrCgroup):
			t.Errorf("error %v does not wrap ErrCgroup", err)
		case err == nil && (b.Bytes < 0 || (b.Bytes > 0) != (b.Source != "")):
			t.Errorf("budget %+v: want a positive size with its source, or none", b)
		}
	})
}
