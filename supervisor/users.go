package supervisor

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// UIDRange is the range of uids (each with the gid of the same number) the
// supervisor gives modules, one each.
type UIDRange struct{ First, Last uint32 }

// DefaultModuleUIDs is the range the edge gives modules when it runs as
// root: above the ranges distributions give users (1000–60000) and below
// nobody (65534).
var DefaultModuleUIDs = UIDRange{First: 61000, Last: 61999}

// IsZero reports whether no range is set (modules run as the edge's user).
func (r UIDRange) IsZero() bool { return r == UIDRange{} }

func (r UIDRange) String() string { return fmt.Sprintf("%d-%d", r.First, r.Last) }

// ParseUIDRange reads "FIRST-LAST" (e.g. 61000-61999). Uid 0 is refused:
// a module never runs as root unless its createOptions.User says so.
func ParseUIDRange(s string) (UIDRange, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	first, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 32)
	last, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 32)
	if !ok || err1 != nil || err2 != nil || first == 0 || last < first || last >= 1<<32-1 {
		return UIDRange{}, fmt.Errorf("uid range %q: want FIRST-LAST with 0 < FIRST ≤ LAST, e.g. %s", s, DefaultModuleUIDs)
	}
	return UIDRange{First: uint32(first), Last: uint32(last)}, nil
}

// userSpec is createOptions.User as Docker takes it: uid, uid:gid, name or
// name:group.
var userSpec = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$`)

// ErrCannotSwitchUser is returned for a module with createOptions.User on an
// edge that is not root.
var ErrCannotSwitchUser = errors.New("cannot switch user: the edge is not root")

// users gives each module the uid and gid it runs as. The allocation
// (module → uid) is kept in a file so that a module keeps its uid across
// restarts and a uid is never handed to another module while it is
// recorded (files the first module left stay its own). Owned by the loop.
type users struct {
	path          string // uids.json
	rng           UIDRange
	passwd, group string
	edgeUID       uint32
	log           *slog.Logger
	byModule      map[string]uint32
}

type uidFile struct {
	Range   string            `json:"range"`
	Modules map[string]uint32 `json:"modules"`
}

func openUsers(path string, o Options) (*users, error) {
	u := &users{path: path, rng: o.ModuleUIDs, passwd: o.PasswdFile, group: o.GroupFile,
		edgeUID: uint32(os.Geteuid()), log: o.Logger, byModule: map[string]uint32{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return u, nil
	}
	if err != nil {
		return nil, fmt.Errorf("module uids: %w", err)
	}
	var f uidFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("module uids %s: %w (fix or remove it; modules then get new uids)", path, err)
	}
	for m, uid := range f.Modules {
		if uid == 0 || uid == u.edgeUID {
			return nil, fmt.Errorf("module uids %s: module %q has uid %d, the edge's own; fix or remove the entry", path, m, uid)
		}
		u.byModule[m] = uid
	}
	return u, nil
}

// credential is what module runs as: createOptions.User when given, else
// its recorded uid, else a new one from the range. Supplementary groups
// are cleared. warn is set when the module runs with uid or gid 0.
func (u *users) credential(module, user string) (cred *syscall.Credential, warn string, err error) {
	var uid, gid uint32
	if user != "" {
		if uid, gid, err = u.lookup(user); err != nil {
			return nil, "", fmt.Errorf("createOptions.User %q: %w", user, err)
		}
		if uid == 0 || gid == 0 {
			warn = fmt.Sprintf("module runs with uid %d gid %d as its createOptions.User %q says: it can read the edge's keys and store", uid, gid, user)
		}
	} else {
		if uid, err = u.allocate(module); err != nil {
			return nil, "", err
		}
		gid = uid
	}
	return &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}, warn, nil
}

// allocate returns module's recorded uid, or records the lowest free one
// of the range: not recorded for another module, not the edge's, and not
// a user or group of the system.
func (u *users) allocate(module string) (uint32, error) {
	if uid, ok := u.byModule[module]; ok {
		return uid, nil
	}
	taken := map[uint32]bool{0: true, u.edgeUID: true}
	for _, uid := range u.byModule {
		taken[uid] = true
	}
	for _, f := range []string{u.passwdFile(), u.groupFile()} {
		entries, _ := readColonFile(f)
		for _, e := range entries {
			if n, err := strconv.ParseUint(e[2], 10, 32); err == nil {
				taken[uint32(n)] = true
			}
		}
	}
	for uid := uint64(u.rng.First); uid <= uint64(u.rng.Last); uid++ {
		if taken[uint32(uid)] {
			continue
		}
		u.byModule[module] = uint32(uid)
		if err := u.save(); err != nil {
			delete(u.byModule, module)
			return 0, err
		}
		u.log.Info("module uid allocated", "module", module, "uid", uid)
		return uint32(uid), nil
	}
	return 0, fmt.Errorf("no free uid in the module range %s (%d recorded in %s): widen --module-uids, or remove entries of modules that are gone", u.rng, len(u.byModule), u.path)
}

func (u *users) save() error {
	data, err := json.MarshalIndent(uidFile{Range: u.rng.String(), Modules: u.byModule}, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(u.path, data, 0o600); err != nil {
		return fmt.Errorf("record module uids in %s: %w", u.path, err)
	}
	return nil
}

// lookup resolves Docker's User: a name is looked up in /etc/passwd (its
// primary group unless a group is given), a group name in /etc/group. A
// numeric uid that is not in /etc/passwd gets the gid of the same number
// (Docker would give gid 0).
func (u *users) lookup(spec string) (uid, gid uint32, err error) {
	user, group, hasGroup := strings.Cut(spec, ":")
	passwd, err := readColonFile(u.passwdFile())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, 0, err
	}
	numeric := false
	if n, err := strconv.ParseUint(user, 10, 32); err == nil {
		uid, gid, numeric = uint32(n), uint32(n), true
	}
	found := false
	for _, e := range passwd {
		if (numeric && e[2] == user) || (!numeric && e[0] == user) {
			if uid, err = parseID(e[2]); err == nil {
				gid, err = parseID(e[3])
			}
			if err != nil {
				return 0, 0, fmt.Errorf("%s: user %q: %w", u.passwdFile(), e[0], err)
			}
			found = true
			break
		}
	}
	if !numeric && !found {
		return 0, 0, fmt.Errorf("no user %q in %s", user, u.passwdFile())
	}
	if hasGroup {
		if gid, err = u.lookupGroup(group); err != nil {
			return 0, 0, err
		}
	}
	return uid, gid, nil
}

func (u *users) lookupGroup(group string) (uint32, error) {
	if n, err := strconv.ParseUint(group, 10, 32); err == nil {
		return uint32(n), nil
	}
	groups, err := readColonFile(u.groupFile())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	for _, e := range groups {
		if e[0] == group {
			return parseID(e[2])
		}
	}
	return 0, fmt.Errorf("no group %q in %s", group, u.groupFile())
}

func (u *users) passwdFile() string { return cmp.Or(u.passwd, "/etc/passwd") }
func (u *users) groupFile() string  { return cmp.Or(u.group, "/etc/group") }

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 1<<32-1 {
		return 0, fmt.Errorf("id %q is not a number", s)
	}
	return uint32(n), nil
}

// readColonFile reads /etc/passwd or /etc/group: entries of at least four
// colon-separated fields (name, password, id, …); comments and short lines
// are skipped.
func readColonFile(path string) ([][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if e := strings.Split(line, ":"); len(e) >= 4 {
			out = append(out, e)
		}
	}
	return out, sc.Err()
}

// writeAtomic replaces path with data: a temporary file, fsynced, renamed,
// and the directory fsynced, so a crash leaves the old file or the new.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode) // an old .tmp may have had another mode
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
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
