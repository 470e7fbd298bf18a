package twin

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParsePatch(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 11) + "1" + strings.Repeat("}", 11)
	ok10 := strings.Repeat(`{"a":`, 10) + "1" + strings.Repeat("}", 10)
	cases := []struct {
		name, in, wantErr string
	}{
		{"simple", `{"a":1,"b":{"c":"x"},"d":null,"e":[1,2]}`, ""},
		{"depth 10", ok10, ""},
		{"depth 11", deep, "nesting deeper than 10"},
		{"not object", `[1]`, "must be a JSON object, got an array"},
		{"not json", `{"a":`, "not valid JSON"},
		{"trailing", `{"a":1} {}`, "extra data"},
		{"dot key", `{"a.b":1}`, `at "a.b": key contains '.'`},
		{"dollar key", `{"x":{"$v":1}}`, `at "x.$v": key contains '$'`},
		{"space key", `{"a b":1}`, "key contains ' '"},
		{"hash key", `{"a#":1}`, "key contains '#'"},
		{"control", `{"a\u0001":1}`, "control character U+0001"},
		{"empty key", `{"":1}`, "empty key"},
		{"null in array", `{"a":[1,null]}`, `at "a.1": null inside an array`},
		{"max int", `{"a":4503599627370495,"b":-4503599627370496}`, ""},
		{"int too big", `{"a":4503599627370496}`, "outside ±2^52"},
		{"int too small", `{"a":-4503599627370497}`, "outside ±2^52"},
		{"huge int", `{"a":123456789012345678901234567890}`, "outside ±2^52"},
		{"float ok", `{"a":1.5e300}`, ""},
		{"float overflow", `{"a":1e999}`, "out of range"},
		{"long string", fmt.Sprintf(`{"a":"%s"}`, strings.Repeat("x", 4097)), "string is 4097 bytes"},
		{"long key", fmt.Sprintf(`{"%s":1}`, strings.Repeat("k", 1025)), "key is 1025 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParsePatch([]byte(c.in), Limits{})
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, c.wantErr)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
		})
	}
}

func TestSize(t *testing.T) {
	p, err := ParsePatch([]byte(`{"ab":"xyz","n":1,"b":true,"o":{"k":[1,"s"]}}`), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	// ab+xyz=5, n+8=9, b+4=5, o + (k + 8 + 1)=11
	if got := Size(p); got != 30 {
		t.Errorf("Size = %d, want 30", got)
	}
}

func FuzzParsePatch(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":{"b":null}}`, `{"a":[1,"x",{"b":true}]}`, `{"a.b":1}`, `[]`, `{"a":1e999}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePatch(data, Limits{})
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if err := Validate(p, Limits{}); err != nil {
			t.Fatalf("accepted patch fails validation: %v", err)
		}
	})
}
