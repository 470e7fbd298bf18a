// Package huburl decides how the edge and the CLI may reach a hub: over
// TLS to any hub that is not on this machine, over plain HTTP only to a
// loopback address or when the operator accepts the risk (--insecure-link).
// The decision is made from the URL's spelling alone, never from DNS: a
// name is remote whatever it resolves to.
package huburl

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// ErrPlainRemote is matched (errors.Is) by Check's refusal of plain HTTP to
// a host that is not loopback.
var ErrPlainRemote = errors.New("plain HTTP to a hub that is not on this machine")

// Loopback reports whether host (a URL's host: a name or an address, with
// or without a port, an IPv6 address with or without brackets) is this
// machine by its spelling: "localhost", an address in 127.0.0.0/8, or ::1
// (also as an IPv4-mapped IPv6 address, ::ffff:127.0.0.1). Every other
// name is remote, including localhost.evil.com, 127.0.0.1.nip.io and
// 0.0.0.0.
func Loopback(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return false
	}
	return a.Unmap().IsLoopback()
}

// Default is the URL of the hub whose IoT Hub host name (a connection
// string's HostName, host or host:port) is hostName: https, or http when
// hostName is loopback.
func Default(hostName string) string {
	if Loopback(hostName) {
		return "http://" + hostName
	}
	return "https://" + hostName
}

// Parse reads raw, one hub URL or a comma-separated list of them (the
// nodes of a hub cluster; spaces around the commas are allowed), and
// returns each as a base URL without a trailing slash. A URL without a
// scheme is http. Each must be http:// or https:// with a host and
// without a query or fragment; a list must not name a URL twice or mix
// schemes. An error names the element at fault.
func Parse(raw string) ([]string, error) {
	us, err := parseList(raw)
	if err != nil {
		return nil, err
	}
	return urlStrings(us), nil
}

// parseList is Parse, the URLs parsed.
func parseList(raw string) ([]*url.URL, error) {
	parts := strings.Split(raw, ",")
	out := make([]*url.URL, 0, len(parts))
	seen := make(map[string]int, len(parts))
	for i, s := range parts {
		u, err := parseOne(strings.TrimSpace(s))
		if err != nil {
			return nil, listError(len(parts), i, err)
		}
		key := strings.ToLower(u.Scheme+"://"+u.Host) + u.Path // a path is case-sensitive
		if j, dup := seen[key]; dup {
			return nil, listError(len(parts), i, fmt.Errorf("hub URL %q is element %d already: name each hub node once", u.Redacted(), j+1))
		}
		seen[key] = i
		if i > 0 && u.Scheme != out[0].Scheme {
			return nil, fmt.Errorf("hub URL list: %q is %s but %q is not: every node of a hub cluster is reached the same way (all https://, or all http:// on loopback)",
				u.Redacted(), u.Scheme, out[0].Redacted())
		}
		out = append(out, u)
	}
	return out, nil
}

// urlStrings returns each URL of us as a string.
func urlStrings(us []*url.URL) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.String()
	}
	return out
}

// parseOne parses one URL of a list (already trimmed).
func parseOne(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("empty hub URL: want https://host[:port] (remove the extra comma)")
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("hub URL %q: %w", s, err)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.Opaque != "" {
		return nil, fmt.Errorf("hub URL %q: want https://host[:port] (http:// only on loopback)", u.Redacted())
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return nil, fmt.Errorf("hub URL %q: want https://host[:port] without a query or fragment", u.Redacted())
	}
	u.Path, u.RawPath = strings.TrimRight(u.Path, "/"), strings.TrimRight(u.RawPath, "/")
	return u, nil
}

func listError(n, i int, err error) error {
	if n == 1 {
		return err
	}
	return fmt.Errorf("hub URL list, element %d of %d: %w", i+1, n, err)
}

// Check parses raw, one hub URL or a comma-separated list of them (see
// Parse), and refuses (ErrPlainRemote) plain HTTP to a host that is not
// loopback unless insecure is set. plainRemote reports that insecure was
// needed: the caller warns.
func Check(raw string, insecure bool) (plainRemote bool, err error) {
	_, plainRemote, err = CheckList(raw, insecure)
	return plainRemote, err
}

// CheckList is Check that also returns the parsed URLs.
func CheckList(raw string, insecure bool) (urls []string, plainRemote bool, err error) {
	us, err := parseList(raw)
	if err != nil {
		return nil, false, err
	}
	for _, u := range us {
		if u.Scheme == "https" || Loopback(u.Host) {
			continue
		}
		if !insecure {
			return nil, false, fmt.Errorf("%w: %s", ErrPlainRemote, u.Redacted())
		}
		plainRemote = true
	}
	return urlStrings(us), plainRemote, nil
}
