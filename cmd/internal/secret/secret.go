// Package secret writes and reads the files that hold keys: the owner
// connection string, certificate keys, tokens. A secret file is written
// 0600 and atomically (temp file in the same directory, fsynced, renamed,
// directory fsynced), so a crash leaves the old file or the new one, never
// half of one, and never a moment where another user could read it.
package secret

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Write replaces path with data, mode 0600.
func Write(path string, data []byte) error {
	return write(path, data, 0o600)
}

// WritePublic replaces path with data the same way, mode 0644: for what
// others must read (a CA certificate) but must never see half written.
func WritePublic(path string, data []byte) error {
	return write(path, data, 0o644)
}

func write(path string, data []byte, mode fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	// CreateTemp makes the file 0600: it is never readable by others, not
	// even before the chmod of a public file.
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	_, err = f.Write(data)
	if err == nil && mode != 0o600 {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

// ErrEmpty is returned by Read for a file that holds nothing but space.
var ErrEmpty = errors.New("the file is empty")

// Read returns the secret held in path, without its trailing newline (an
// editor's or `echo`'s). what names the file in errors (the flag, e.g.
// "--connection-string-file"). warn, if not nil, is told when the file is
// readable by its group or by others.
func Read(path, what string, warn func(msg string)) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	s := strings.TrimRight(string(data), "\r\n")
	if strings.TrimSpace(s) == "" {
		return "", fmt.Errorf("%s %s: %w; put the secret in it (one line)", what, path, ErrEmpty)
	}
	if warn != nil {
		if msg := ModeWarning(path); msg != "" {
			warn(msg)
		}
	}
	return s, nil
}

// ModeWarning says what is wrong with the mode of a file that holds a
// secret, or "" when only its owner can read it.
func ModeWarning(path string) string {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o044 == 0 {
		return ""
	}
	return fmt.Sprintf("%s holds a secret but is readable by its group or by others (mode %04o); run: chmod 600 %s",
		path, fi.Mode().Perm(), path)
}
