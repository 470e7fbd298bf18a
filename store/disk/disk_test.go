package disk

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestHolesOfSparseFiles(t *testing.T) {
	dir := t.TempDir()
	// A mapped write-ahead log as Badger makes it: truncated to its full
	// size, written at the front only.
	f, err := os.Create(filepath.Join(dir, "00001.mem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(8 << 20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 1<<20), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.WriteFile(filepath.Join(dir, "000001.sst"), make([]byte, 256<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Holes(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Filesystems allocate in blocks (and some preallocate a little more),
	// so the hole is 7 MiB give or take a few blocks.
	if got < 7<<20-64<<10 || got > 7<<20 {
		t.Fatalf("holes = %d, want about %d", got, 7<<20)
	}
	if got, err := Holes(filepath.Join(dir, "missing")); err != nil || got != 0 {
		t.Fatalf("holes of a missing directory = %d, %v; want 0, nil", got, err)
	}
}

// With FillHoles the monitor backs the holes of the store's files with
// blocks, keeping their size and content.
func TestFillHolesKeepsSizeAndContent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "000001.vlog")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(8 << 20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("head"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	m, err := Open(Options{Dir: dir, Allowance: 1 << 20, FillHoles: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if st := m.Status(); st.Holes != 0 {
		t.Fatalf("holes %d after Open with FillHoles, want 0", st.Holes)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != 8<<20 || string(data[:4]) != "head" || data[4] != 0 || data[len(data)-1] != 0 {
		t.Fatalf("file changed: %d bytes, starts %q", len(data), data[:8])
	}
}

func TestBallastTakenAndReleased(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, BallastFile)
	m, err := Open(Options{Dir: dir, Allowance: 1 << 20, Budget: 1 << 20, Ballast: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if st := m.Status(); st.Level != OK || st.Ballast != 4<<20 {
		t.Fatalf("status %+v: want ok with the ballast held", st)
	}
	if n, _ := allocated(path); n != 4<<20 {
		t.Fatalf("ballast allocates %d bytes, want %d (not sparse)", n, 4<<20)
	}
	if err := m.Telemetry(1000); err != nil {
		t.Fatalf("telemetry on a roomy disk: %v", err)
	}
	m.Close()

	// The same data directory on a disk that is now full for this store:
	// the ballast goes before anything else is opened.
	sp, err := Statfs(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err = Open(Options{Dir: dir, Allowance: sp.Avail + 1<<40, Budget: 1 << 20, Ballast: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ballast still there on a full disk: %v", err)
	}
	st := m.Status()
	if st.Level != Full || st.State != "full" || st.Ballast != 0 {
		t.Fatalf("status %+v: want full, ballast released", st)
	}
	if err := m.Telemetry(10); !errors.Is(err, ErrLow) {
		t.Fatalf("telemetry on a full disk: %v, want ErrLow", err)
	}
	if err := m.Write(10); !errors.Is(err, ErrFull) {
		t.Fatalf("write on a full disk: %v, want ErrFull", err)
	}
	if st := m.Status(); st.RefusedTelemetry != 1 || st.RefusedWrites != 1 {
		t.Fatalf("refusals counted %d/%d, want 1/1", st.RefusedTelemetry, st.RefusedWrites)
	}
}

// Opening below the reserve (not yet below the allowance) releases the
// ballast too: the store is about to create files.
func TestBallastReleasedAtOpenBelowReserve(t *testing.T) {
	dir := t.TempDir()
	m, err := Open(Options{Dir: dir, Allowance: 1 << 20, Budget: 1 << 20, Ballast: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	sp, err := Statfs(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err = Open(Options{Dir: dir, Allowance: 1 << 20, Budget: sp.Avail + 1<<40, Ballast: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	st := m.Status()
	if st.Level != TelemetryRefused || st.Ballast != 0 {
		t.Fatalf("status %+v: want telemetry-refused with the ballast released", st)
	}
	if want := 1<<20 + sp.Avail + 1<<40 + 4<<20; st.Reserve != want {
		t.Fatalf("reserve %d with the ballast released, want %d (its size added)", st.Reserve, want)
	}
	if _, err := os.Stat(filepath.Join(dir, BallastFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ballast kept: %v", err)
	}
}

func TestBudgetKeptForManagementWrites(t *testing.T) {
	dir := t.TempDir()
	sp, err := Statfs(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Open(Options{Dir: dir, Allowance: 1 << 20, Budget: sp.Avail + 1<<40})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Level() != TelemetryRefused {
		t.Fatalf("level %v, want telemetry-refused", m.Level())
	}
	if err := m.Telemetry(10); !errors.Is(err, ErrLow) {
		t.Fatalf("telemetry below the reserve: %v", err)
	}
	if err := m.Write(10); err != nil {
		t.Fatalf("twin write inside the budget: %v", err)
	}
}

// A burst larger than the margin of the last measurement is refused even
// before the monitor goroutine measures again.
func TestChargeBeyondMarginRefused(t *testing.T) {
	dir := t.TempDir()
	sp, err := Statfs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if sp.Avail < 8<<30 {
		t.Skipf("needs 8 GiB free on %s, has %d", dir, sp.Avail)
	}
	// The reserve leaves a 4 GiB margin (other processes may move it by a
	// little; the charges below are far from its edges).
	m, err := Open(Options{Dir: dir, Allowance: 1 << 20, Budget: sp.Avail - 4<<30, Every: 1 << 62})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Telemetry(1 << 20); err != nil {
		t.Fatal(err)
	}
	if err := m.Telemetry(3 << 30); !errors.Is(err, ErrLow) { // charged twice: 6 GiB
		t.Fatalf("3 GiB append with a 4 GiB margin: %v, want ErrLow", err)
	}
	if m.Level() != TelemetryRefused {
		t.Fatalf("level %v after a refused burst, want telemetry-refused (the status must say why)", m.Level())
	}
	if err := m.Telemetry(1); !errors.Is(err, ErrLow) {
		t.Fatalf("a small append right after: %v; the level improves only past the reserve and hysteresis", err)
	}
	if err := m.Write(1 << 20); err != nil {
		t.Fatalf("management write within the margin: %v", err)
	}
}

func TestLevelFor(t *testing.T) {
	const a, r, h = 100, 150, 20
	for _, c := range []struct {
		free int64
		prev Level
		want Level
	}{
		{1000, OK, OK},
		{150, OK, OK},
		{149, OK, TelemetryRefused},
		{100, OK, TelemetryRefused},
		{99, OK, Full},
		{0, TelemetryRefused, Full},
		{160, TelemetryRefused, TelemetryRefused}, // not yet hyst above the reserve
		{170, TelemetryRefused, OK},
		{110, Full, Full},
		{120, Full, TelemetryRefused},
		{170, Full, OK},
	} {
		if got := levelFor(c.free, c.prev, a, r, h); got != c.want {
			t.Errorf("levelFor(%d, %v) = %v, want %v", c.free, c.prev, got, c.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"1048576", 1 << 20}, {"512MiB", 512 << 20}, {"512mib", 512 << 20}, {"1.5GiB", 3 << 29},
		{"64k", 64 << 10}, {"64 KiB", 64 << 10}, {"2MB", 2e6}, {"1G", 1 << 30}, {"10B", 10},
	} {
		if got, err := ParseSize(c.in); err != nil || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.3B", "1e9", "0x10", "nan", "inf", "1 2", "9999999999TiB", "+5"} {
		if got, err := ParseSize(in); !errors.Is(err, ErrSize) {
			t.Errorf("ParseSize(%q) = %d, %v; want ErrSize", in, got, err)
		}
	}
	for _, n := range []int64{0, 1000, 1 << 10, 512 << 20, 3 << 29, 5 << 40} {
		if got, err := ParseSize(FormatSize(n)); err != nil || got != n {
			t.Errorf("ParseSize(FormatSize(%d) = %q) = %d, %v", n, FormatSize(n), got, err)
		}
	}
}

// TestScannerRemembersSealedFiles: a whole table and a whole value-log file
// other than the newest are not looked at again; the newest value log, the
// write-ahead log and an empty file (a table about to be truncated to its
// size) are; a removed file is forgotten.
func TestScannerRemembersSealedFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, n int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, make([]byte, n), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sparse := func(p string, n int64) {
		if err := os.Truncate(p, n); err != nil {
			t.Fatal(err)
		}
	}
	sst, old, newest := write("000001.sst", 64<<10), write("000001.vlog", 64<<10), write("000002.vlog", 64<<10)
	mem, building := write("00001.mem", 64<<10), write("000002.sst", 0)
	var s holeScanner
	if h, _, err := s.scan(dir, false); err != nil || h != 0 {
		t.Fatalf("first scan: holes %d, %v", h, err)
	}
	for p, want := range map[string]bool{sst: true, old: true, newest: false, mem: false, building: false} {
		if s.sealed[p] != want {
			t.Errorf("%s sealed = %v, want %v", filepath.Base(p), s.sealed[p], want)
		}
	}
	// Files still being written are measured again: their holes count.
	for _, p := range []string{newest, mem, building} {
		sparse(p, 1<<20)
	}
	h, _, err := s.scan(dir, false)
	if err != nil || h < 3*(1<<20-64<<10)-64<<10 {
		t.Fatalf("holes %d (%v), want those of the three files still being written", h, err)
	}
	if err := os.Remove(sst); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.scan(dir, false); err != nil || s.sealed[sst] {
		t.Fatalf("a removed table is still remembered (%v)", err)
	}
}
