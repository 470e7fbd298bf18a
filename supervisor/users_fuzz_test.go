package supervisor

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseUIDRange: a range that parses never includes uid 0 and is in
// order.
func FuzzParseUIDRange(f *testing.F) {
	for _, s := range []string{"61000-61999", "0-10", "5-4", " 1 - 2 ", "1-4294967295", "-", "a-b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseUIDRange(s)
		if err == nil && (r.First == 0 || r.Last < r.First) {
			t.Fatalf("ParseUIDRange(%q) = %v", s, r)
		}
	})
}

// FuzzUserLookup: createOptions.User against any /etc/passwd and
// /etc/group: no panic, and a user found by name has the uid its passwd
// line gives.
func FuzzUserLookup(f *testing.F) {
	f.Add("app:x:1000:1000::/home/app:/bin/sh\n", "staff:x:50:\n", "app:staff")
	f.Add("# comment\nbad\n", "", "1234:5")
	f.Add("root:x:0:0:::\n", "g:x:notanumber:\n", "root:g")
	f.Fuzz(func(t *testing.T, passwd, group, spec string) {
		if !userSpec.MatchString(spec) {
			return // refused before lookup (TestCreateOptionsUser)
		}
		dir := t.TempDir()
		u := &users{passwd: filepath.Join(dir, "passwd"), group: filepath.Join(dir, "group")}
		if err := os.WriteFile(u.passwd, []byte(passwd), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(u.group, []byte(group), 0o600); err != nil {
			t.Fatal(err)
		}
		uid, _, err := u.lookup(spec)
		name, _, _ := strings.Cut(spec, ":")
		if err != nil || isNumber(name) {
			return
		}
		for _, line := range strings.Split(passwd, "\n") {
			e := strings.Split(strings.TrimSpace(line), ":")
			if len(e) >= 4 && e[0] == name && !strings.HasPrefix(e[0], "#") {
				if e[2] != strconv.FormatUint(uint64(uid), 10) {
					t.Fatalf("user %q: uid %d, passwd says %q", name, uid, e[2])
				}
				return
			}
		}
	})
}

func isNumber(s string) bool {
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}
