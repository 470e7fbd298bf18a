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

// Check parses raw, one hub URL or a comma-separated list of them, and
// refuses (ErrPlainRemote) plain HTTP to a host that is not loopback unless
// insecure is set. A URL without a scheme is http. plainRemote reports that
// insecure was needed: the caller warns.
func Check(raw string, insecure bool) (plainRemote bool, err error) {
	for _, s := range strings.Split(raw, ",") {
		s = strings.TrimSpace(s)
		if !strings.Contains(s, "://") {
			s = "http://" + s
		}
		u, err := url.Parse(s)
		if err != nil {
			return false, fmt.Errorf("hub URL %q: %w", s, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return false, fmt.Errorf("hub URL %q: want https://host[:port] (http:// only on loopback)", s)
		}
		if u.Scheme == "https" || Loopback(u.Host) {
			continue
		}
		if !insecure {
			return false, fmt.Errorf("%w: %s", ErrPlainRemote, u.Redacted())
		}
		plainRemote = true
	}
	return plainRemote, nil
}
