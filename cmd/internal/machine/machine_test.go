package machine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestID(t *testing.T) {
	dir := t.TempDir()
	a := write(t, dir, "a", "3d1219c7c4c5404aaa1f6d2a48adfda4\n")
	b := write(t, dir, "b", "0123456789abcdef0123456789abcdef\n")
	empty := write(t, dir, "empty", "\n")
	uninit := write(t, dir, "uninit", "uninitialized\n")
	missing := filepath.Join(dir, "missing")
	fb := filepath.Join(dir, "state", "outpost", "machine-id")

	idA, src, err := ID(Options{File: a})
	if err != nil || src != a || len(idA) != 32 {
		t.Fatalf("ID(File a) = %q, %q, %v", idA, src, err)
	}
	if strings.Contains(idA, "3d1219c7") {
		t.Fatal("the raw machine id leaks")
	}
	idB, _, _ := ID(Options{File: b})
	if idB == idA {
		t.Fatal("two machine ids give one digest")
	}
	for name, c := range map[string]struct {
		o       Options
		want    string
		wantSrc string
	}{
		"the first readable default":          {Options{Files: []string{missing, empty, uninit, b, a}}, idB, b},
		"the same file, the same id":          {Options{Files: []string{a}}, idA, a},
		"no source, no fallback: unknown":     {Options{Files: []string{missing, empty}}, "", ""},
		"an explicit file wins over defaults": {Options{File: a, Files: []string{b}}, idA, a},
	} {
		id, src, err := ID(c.o)
		if err != nil || id != c.want || src != c.wantSrc {
			t.Errorf("%s: %q from %q (%v), want %q from %q", name, id, src, err, c.want, c.wantSrc)
		}
	}
	for _, f := range []string{missing, empty} {
		if _, _, err := ID(Options{File: f}); err == nil {
			t.Errorf("an explicit machine id file %s that gives nothing is accepted", f)
		}
	}

	// The fallback is written at the first start and read afterwards; a
	// second machine (another fallback file) gets another id.
	first, src, err := ID(Options{Files: []string{missing}, Fallback: fb})
	if err != nil || first == "" || src != fb {
		t.Fatalf("fallback: %q from %q, %v", first, src, err)
	}
	if again, _, _ := ID(Options{Files: []string{missing}, Fallback: fb}); again != first {
		t.Fatalf("the fallback changed between starts: %q then %q", first, again)
	}
	other, _, _ := ID(Options{Files: []string{missing}, Fallback: filepath.Join(dir, "other", "machine-id")})
	if other == first {
		t.Fatal("two fallbacks gave one id")
	}
	if id, _, _ := ID(Options{Files: []string{a}, Fallback: fb}); id != idA {
		t.Fatal("the fallback was used although a machine id file exists")
	}
	if _, _, err := ID(Options{Files: []string{missing}, Fallback: filepath.Join(a, "not-a-dir", "machine-id")}); !errors.Is(err, ErrFallback) {
		t.Fatalf("a fallback that cannot be recorded: %v, want ErrFallback", err)
	}
}

// Edges starting at once on a machine without a machine id agree on the
// fallback.
func TestFallbackConcurrentFirstStart(t *testing.T) {
	fb := filepath.Join(t.TempDir(), "machine-id")
	ids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], _, _ = ID(Options{Files: []string{}, Fallback: fb})
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id == "" || id != ids[0] {
			t.Fatalf("ids %v", ids)
		}
	}
}
