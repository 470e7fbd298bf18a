package huburl

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestLoopback(t *testing.T) {
	tests := []struct {
		host string
		want bool
	}{
		{"localhost", true},
		{"LOCALHOST:8080", true},
		{"127.0.0.1", true},
		{"127.0.0.1:8080", true},
		{"127.255.255.254:1", true},
		{"[::1]", true},
		{"[::1]:8080", true},
		{"::1", true},
		{"[::ffff:127.0.0.1]:8080", true}, // IPv4-mapped: reaches 127.0.0.1
		{"::ffff:7f00:1", true},
		{"localhost.evil.com", false},
		{"localhost.", false},
		{"sub.localhost", false},
		{"127.0.0.1.nip.io", false},
		{"127.0.0.1.nip.io:8080", false},
		{"127.1", false}, // not an address Go parses: a name, looked up in DNS
		{"0.0.0.0", false},
		{"0.0.0.0:8080", false},
		{"[::]:8080", false},
		{"[::ffff:10.0.0.1]", false},
		{"[fe80::1%25lo]", false},
		{"10.0.0.1", false},
		{"192.168.1.10:8080", false},
		{"hub.example", false},
		{"hub.local", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := Loopback(tt.host); got != tt.want {
			t.Errorf("Loopback(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}

func TestDefault(t *testing.T) {
	for host, want := range map[string]string{
		"127.0.0.1:8080":     "http://127.0.0.1:8080",
		"localhost":          "http://localhost",
		"hub.example":        "https://hub.example",
		"hub.example:8443":   "https://hub.example:8443",
		"localhost.evil.com": "https://localhost.evil.com",
		"10.0.0.1:8080":      "https://10.0.0.1:8080",
	} {
		if got := Default(host); got != want {
			t.Errorf("Default(%q) = %q, want %q", host, got, want)
		}
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		url          string
		insecure     bool
		plainRemote  bool
		refused, bad bool
	}{
		{url: "https://hub.example"},
		{url: "http://127.0.0.1:8080"},
		{url: "127.0.0.1:8080"},
		{url: "http://localhost:8080"},
		{url: "http://[::1]:8080"},
		{url: "http://hub.example:8080", refused: true},
		{url: "hub.example:8080", refused: true},
		{url: "http://localhost.evil.com", refused: true},
		{url: "http://0.0.0.0:8080", refused: true},
		{url: "http://a.example, http://b.example", refused: true},
		{url: "http://127.0.0.1:1, http://b.example", refused: true}, // one remote node is enough
		{url: "http://127.0.0.1:1, https://b.example", bad: true},    // mixed schemes
		{url: "https://a.example, https://b.example"},
		{url: "http://hub.example:8080", insecure: true, plainRemote: true},
		{url: "https://hub.example", insecure: true},
		{url: "ftp://hub.example", bad: true},
		{url: "https://", bad: true},
	}
	for _, tt := range tests {
		plain, err := Check(tt.url, tt.insecure)
		switch {
		case tt.refused:
			if !errors.Is(err, ErrPlainRemote) {
				t.Errorf("Check(%q, %v) = %v, want ErrPlainRemote", tt.url, tt.insecure, err)
			}
		case tt.bad:
			if err == nil || errors.Is(err, ErrPlainRemote) {
				t.Errorf("Check(%q) = %v, want a malformed-URL error", tt.url, err)
			}
		case err != nil || plain != tt.plainRemote:
			t.Errorf("Check(%q, %v) = %v, %v; want %v, nil", tt.url, tt.insecure, plain, err, tt.plainRemote)
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		raw  string
		want []string
		err  string // a part of the error; "" for none
	}{
		{raw: "http://127.0.0.1:8080", want: []string{"http://127.0.0.1:8080"}},
		{raw: "127.0.0.1:8080/", want: []string{"http://127.0.0.1:8080"}},
		{raw: "HTTPS://hub.example/base/", want: []string{"https://hub.example/base"}},
		{raw: "https://a.example, https://b.example ,https://c.example:8443",
			want: []string{"https://a.example", "https://b.example", "https://c.example:8443"}},
		{raw: "127.0.0.1:1,127.0.0.1:2", want: []string{"http://127.0.0.1:1", "http://127.0.0.1:2"}},
		{raw: "", err: "empty hub URL"},
		{raw: "https://a.example,", err: "element 2 of 2: empty hub URL"},
		{raw: "https://a.example,,https://b.example", err: "element 2 of 3: empty hub URL"},
		{raw: "https://a.example, https://A.example/", err: "element 2 of 2: hub URL \"https://A.example\" is element 1 already"},
		{raw: "https://a.example, ftp://b.example", err: "element 2 of 2: hub URL \"ftp://b.example\": want https://host"},
		{raw: "https://a.example, http://b.example", err: "\"http://b.example\" is http but \"https://a.example\" is not"},
		{raw: "https://a.example?x=1", err: "without a query or fragment"},
		{raw: "https://a.example#f", err: "without a query or fragment"},
		{raw: "https://", err: "want https://host"},
		{raw: "https://a.example, https://b.example/%zz", err: "element 2 of 2"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.raw)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("Parse(%q) = %q, %v; want an error with %q", tt.raw, got, err, tt.err)
		case tt.err == "" && (err != nil || !slices.Equal(got, tt.want)):
			t.Errorf("Parse(%q) = %q, %v; want %q", tt.raw, got, err, tt.want)
		}
	}
}
