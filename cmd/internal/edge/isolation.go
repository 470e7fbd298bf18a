package edge

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/outpost-edge/outpost/supervisor"
)

// notIsolated is the edge status's moduleIsolation when the edge is not
// root.
const notIsolated = "none: the edge is not root; modules run as its user and can read its data directory " +
	"(store, keys, CA key) and each other's environment"

// moduleIsolation says what keeps modules apart from the edge and from each
// other for an edge running with effective uid euid: "uid" (each module
// under its own uid and gid) needs root.
func moduleIsolation(euid int) string {
	if euid == 0 {
		return "uid"
	}
	return notIsolated
}

// moduleUIDs is the range the supervisor gives modules uids from: none
// unless the edge is root (only root can switch user).
func moduleUIDs(euid int, r supervisor.UIDRange) supervisor.UIDRange {
	if euid != 0 {
		return supervisor.UIDRange{}
	}
	if r.IsZero() {
		return supervisor.DefaultModuleUIDs
	}
	return r
}

// The data directory when modules run under their own uids: 0711, so that
// they can reach what they need by name without listing anything —
// modules/ (their images and directories, arranged by the supervisor),
// certs/ca.pem (EdgeModuleCACertificateFile) and ready.json (addresses, no
// secrets). Everything else (the store, keys, the API token, the CA key and
// the server key) is the edge's alone: 0700 or 0600, tightened at every
// start, so a file a version or an operator left open is closed too.
// When the edge is not root, modules are the edge's user: the directory is
// 0700 against other local users.
var (
	publicEntries = map[string]bool{"modules": true, "certs": true, "ready.json": true}
	publicCerts   = map[string]bool{"ca.pem": true, "server.pem": true}
)

// protectDataDir sets the data directory's modes; isolated says whether
// modules run under their own uids.
func protectDataDir(dir string, isolated bool) error {
	if !isolated {
		return private(dir)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	if err := privateEntries(dir, publicEntries); err != nil {
		return err
	}
	certs := filepath.Join(dir, "certs")
	if err := os.Chmod(certs, 0o711); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("data directory %s: %w", certs, err)
	}
	if err := privateEntries(certs, publicCerts); err != nil {
		return err
	}
	// Modules read the CA certificate, whatever the umask made it.
	if err := os.Chmod(filepath.Join(certs, "ca.pem"), 0o644); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("data directory: %w", err)
	}
	return nil
}

// privateEntries makes every entry of dir but the public ones the edge's
// alone.
func privateEntries(dir string, public map[string]bool) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	for _, e := range entries {
		if !public[e.Name()] {
			if err := private(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// private takes group and other permissions off p (not through a link).
func private(p string) error {
	st, err := os.Lstat(p)
	if err != nil || st.Mode()&fs.ModeSymlink != 0 || st.Mode().Perm()&0o077 == 0 {
		return err
	}
	if err := os.Chmod(p, st.Mode().Perm()&^0o077); err != nil {
		return fmt.Errorf("data directory: make %s private: %w", p, err)
	}
	return nil
}
