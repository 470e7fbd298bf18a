// Package machine names the machine the edge runs on, so that an edge whose
// data directory was copied to another machine (gateways installed from one
// SD-card image, containers started from one volume snapshot) notices and
// takes an instance id of its own.
package machine

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrFallback wraps a failure to read or record the fallback id; the edge
// then runs without a machine id rather than not at all.
var ErrFallback = errors.New("machine id fallback")

// DefaultFiles are read in order when no file is given: systemd's machine
// id, then D-Bus's (the same id on most systems, the only one on some).
var DefaultFiles = []string{"/etc/machine-id", "/var/lib/dbus/machine-id"}

// Options say where the machine id comes from.
type Options struct {
	// File is the operator's choice (--machine-id-file); it must hold an
	// id. Empty: DefaultFiles, then Fallback.
	File string
	// Files replaces DefaultFiles (tests).
	Files []string
	// Fallback is a file that holds a random id written at the first start
	// on a machine none of the files names (a container without
	// /etc/machine-id). Empty: no fallback.
	Fallback string
}

// ID returns a digest of the machine id (the id itself is not stored or
// shown: systemd asks applications to derive their own) and where it came
// from. With no source at all it returns "" and no error: the edge then
// cannot tell a copied data directory, which the hub's digests still keep
// from losing messages.
func ID(o Options) (id, source string, err error) {
	if o.File != "" {
		raw, err := read(o.File)
		if err != nil {
			return "", "", fmt.Errorf("machine id file: %w", err)
		}
		if raw == "" {
			return "", "", fmt.Errorf("machine id file %s is empty", o.File)
		}
		return digest(raw), o.File, nil
	}
	files := o.Files
	if files == nil {
		files = DefaultFiles
	}
	for _, f := range files {
		if raw, err := read(f); err == nil && raw != "" && raw != "uninitialized" {
			return digest(raw), f, nil
		}
	}
	if o.Fallback == "" {
		return "", "", nil
	}
	raw, err := fallback(o.Fallback)
	if err != nil {
		return "", "", fmt.Errorf("%w: %w", ErrFallback, err)
	}
	return digest(raw), o.Fallback, nil
}

// DefaultFallback is <user config dir>/outpost/machine-id, or "" when the
// user has no config directory.
func DefaultFallback() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "outpost", "machine-id")
}

func read(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return strings.TrimSpace(string(data)), nil
}

// fallback reads the fallback id, writing a random one first if there is
// none (atomically, so two edges starting at once agree).
func fallback(path string) (string, error) {
	raw, err := read(path)
	if err == nil && raw != "" {
		return raw, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".machine-id-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(hex.EncodeToString(b[:]) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// Link, not rename: the first edge to write wins, the others read it.
		if err = os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
			err = nil
		}
	}
	if err != nil {
		return "", fmt.Errorf("record %s: %w", path, err)
	}
	return read(path)
}

func digest(raw string) string {
	sum := sha256.Sum256([]byte("outpost-edge-machine\x00" + raw))
	return hex.EncodeToString(sum[:16])
}
