package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// The supervisor's directory when modules run under their own uids:
//
//	Dir/            0711  modules traverse it, cannot list it
//	  images/       0711  blobs 0755 and unpacked archives 0755/0644, the edge's: modules run them, cannot change them
//	  run/          0711
//	    <module>/   0700  the module's HOME and working directory, its own
//	  logs/         0700  the edge writes each module's output (a pipe) here; modules cannot read it
//	  applied.json  0600  the deployment (its env may hold secrets)
//	  uids.json     0600  module → uid
//
// A module can reach its image and its own directory and nothing else.
var layoutModes = map[string]os.FileMode{".": 0o711, "images": 0o711, "run": 0o711, "logs": 0o700}

// arrange creates the directories with their modes and tightens those an
// older version made more open.
func (s *Supervisor) arrange() error {
	for name, mode := range layoutModes {
		dir := filepath.Join(s.opts.Dir, name)
		if err := os.MkdirAll(dir, mode); err != nil {
			return err
		}
		if err := os.Chmod(dir, mode); err != nil {
			return err
		}
	}
	for _, f := range []string{"applied.json", "uids.json"} {
		if err := os.Chmod(filepath.Join(s.opts.Dir, f), 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// reachable checks that a module under another uid can reach dir: every
// directory from it up to / must be searchable by others.
func reachable(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for p := dir; ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("modules run under their own uids and cannot reach %s: %s is %s (others may not search it); "+
				"keep the edge's data directory where every parent directory is searchable (e.g. /var/lib/outpost), or chmod o+x %s",
				dir, p, st.Mode().Perm(), p)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// workDir makes the module's HOME and working directory. With a
// credential, both are the module's own, mode 0700.
func (s *Supervisor) workDir(name, rel string, cred *syscall.Credential) (string, error) {
	home := s.home(name)
	dir := filepath.Join(home, rel)
	if cred == nil {
		return dir, os.MkdirAll(dir, 0o755)
	}
	if err := os.Mkdir(home, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	if err := ownHome(home, cred); err != nil {
		return "", fmt.Errorf("module directory %s: %w", home, err)
	}
	p := home
	for _, part := range strings.Split(filepath.Clean(rel), string(filepath.Separator)) {
		if part == "." || part == "" {
			continue
		}
		p = filepath.Join(p, part)
		if err := mkdirOwned(p, cred); err != nil {
			return "", fmt.Errorf("WorkingDir %s: %w", rel, err)
		}
	}
	return dir, nil
}

// ownHome gives home to the module. A home that belongs to someone else
// (made by a version that ran modules as the edge, or before the module's
// User changed) is handed over with everything in it, links not followed
// and hard-linked files left alone: a module could have linked a file of
// the edge into its directory.
func ownHome(home string, cred *syscall.Credential) error {
	st, err := os.Lstat(home)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return errors.New("not a directory")
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && (sys.Uid != cred.Uid || sys.Gid != cred.Gid) {
		err := filepath.WalkDir(home, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			if sys, ok := info.Sys().(*syscall.Stat_t); ok && info.Mode().IsRegular() && sys.Nlink > 1 {
				return nil
			}
			return os.Lchown(p, int(cred.Uid), int(cred.Gid))
		})
		if err != nil {
			return err
		}
	}
	return os.Chmod(home, 0o700)
}

// mkdirOwned makes p, the module's; a p the module made is taken as it is,
// unless it is not a directory (a symbolic link could point anywhere).
func mkdirOwned(p string, cred *syscall.Credential) error {
	err := os.Mkdir(p, 0o700)
	if errors.Is(err, os.ErrExist) {
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if !st.IsDir() {
			return fmt.Errorf("%s is not a directory (%s)", p, st.Mode().Type())
		}
		return nil
	}
	if err != nil {
		return err
	}
	return os.Lchown(p, int(cred.Uid), int(cred.Gid))
}
