package twin

import (
	"reflect"
	"strings"
	"testing"
)

// TestScanMatchesGet: a scan yields, in id order, exactly the views Get
// gives, after the given id and only the twins keep accepts.
func TestScanMatchesGet(t *testing.T) {
	s := openStore(t, openDB(t, ""), Cloud, "hub", &clockT{ms: 1_750_000_000_000})
	ids := []string{"a", "a/m1", "a/m2", "a-b", "b", "c/m"}
	for i, id := range ids {
		if _, err := s.PatchTags(ctx, id, []byte(`{"n":`+string(rune('0'+i))+`,"site":"x"}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PatchDesired(ctx, id, []byte(`{"d":{"deep":true}}`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.PatchDesired(ctx, "b", []byte(`{"d":null}`)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		after string
		keep  func(string) bool
		want  []string
	}{
		{"", nil, []string{"a", "a-b", "a/m1", "a/m2", "b", "c/m"}},
		{"a-b", nil, []string{"a/m1", "a/m2", "b", "c/m"}},
		{"", func(id string) bool { return !strings.Contains(id, "/") }, []string{"a", "a-b", "b"}},
		{"a", func(id string) bool { return strings.Contains(id, "/") }, []string{"a/m1", "a/m2", "c/m"}},
		{"c/m", nil, nil},
	} {
		var got []string
		err := s.Scan(c.after, c.keep, func(v *View) bool {
			got = append(got, v.ID)
			want, err := s.Get(v.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(v, want) {
				t.Errorf("scan view of %s = %+v, Get = %+v", v.ID, v, want)
			}
			return true
		})
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("Scan(%q): %v %v, want %v", c.after, got, err, c.want)
		}
	}
	n := 0
	_ = s.Scan("", nil, func(*View) bool { n++; return n < 2 })
	if n != 2 {
		t.Errorf("Scan went on after fn returned false: %d calls", n)
	}
}
