package secret

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestWriteMode(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	// An older file readable by all is replaced by one only the owner reads.
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []byte("new")); err != nil {
		t.Fatal(err)
	}
	checkFile(t, path, "new", 0o600)
	pub := filepath.Join(dir, "ca.pem")
	if err := WritePublic(pub, []byte("cert")); err != nil {
		t.Fatal(err)
	}
	checkFile(t, pub, "cert", 0o644)
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("temp files left behind: %v", entries)
	}
}

func checkFile(t *testing.T, path, want string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil || string(data) != want {
		t.Fatalf("%s = %q, %v; want %q", path, data, err, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != mode {
		t.Errorf("%s mode %04o, want %04o", path, got, mode)
	}
}

// A write that fails leaves the old file whole and no temp file.
func TestWriteFailureKeepsOld(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	if err := Write(path, []byte("old")); err != nil {
		t.Fatal(err)
	}
	// A directory in the way of the rename makes the last step fail.
	target := filepath.Join(dir, "sub")
	if err := os.MkdirAll(filepath.Join(target, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Write(target, []byte("new")); err == nil {
		t.Fatal("write over a non-empty directory succeeded")
	}
	checkFile(t, path, "old", 0o600)
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("temp files left behind: %v", entries)
	}
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var warnings []string
	warn := func(m string) { warnings = append(warnings, m) }
	for _, c := range []struct {
		name, data, want string
		mode             os.FileMode
		warn             bool
	}{
		{"plain", "HostName=h;DeviceId=d;SharedAccessKey=k", "HostName=h;DeviceId=d;SharedAccessKey=k", 0o600, false},
		{"newline", "abc=\n", "abc=", 0o400, false},
		{"crlf", "abc=\r\n", "abc=", 0o600, false},
		{"open", "abc=\n", "abc=", 0o644, true},
	} {
		warnings = nil
		got, err := Read(write(c.name, c.data, c.mode), "--x-file", warn)
		if err != nil || got != c.want {
			t.Errorf("%s: Read = %q, %v; want %q", c.name, got, err, c.want)
		}
		if (len(warnings) > 0) != c.warn {
			t.Errorf("%s: warnings %q, want a warning: %v", c.name, warnings, c.warn)
		}
		if c.warn && !strings.Contains(warnings[0], "chmod 600") {
			t.Errorf("%s: warning %q does not say what to do", c.name, warnings[0])
		}
	}
	if _, err := Read(write("empty", "\n", 0o600), "--x-file", warn); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty file: %v, want ErrEmpty", err)
	}
	_, err := Read(filepath.Join(dir, "missing"), "--x-file", warn)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "--x-file") {
		t.Errorf("missing file: %v", err)
	}
}
