package scenario

import (
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/outpost-edge/outpost/cmd/internal/linkproxy"
)

// links are the proxies of running scripts, keyed by $WORK and name; each
// script closes its own when it ends.
var links = struct {
	sync.Mutex
	m map[string]*linkproxy.Proxy
}{m: map[string]*linkproxy.Proxy{}}

const linkUsage = "usage: link start NAME TARGET | link cut|blackhole|restore|unflap|stats NAME | " +
	"link delay NAME DURATION | link rate NAME BYTES_PER_SECOND | link flap NAME MINDOWN MAXDOWN MINUP MAXUP"

// link start NAME TARGET: start a fault-injecting proxy on 127.0.0.1 in
// front of TARGET (host:port or URL) and export $NAME (http://addr) and
// $NAME_ADDR (addr). The other verbs drive it: cut, blackhole, restore,
// delay DURATION, rate BYTES_PER_SECOND (B, KB, MB, KiB, MiB; 0 = none),
// flap MINDOWN MAXDOWN MINUP MAXUP, unflap, and stats, which prints
// "conns=N cuts=N up=N down=N".
func cmdLink(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("link does not support !")
	}
	if len(args) < 2 {
		ts.Fatalf(linkUsage)
	}
	verb, name, rest := args[0], args[1], args[2:]
	want := func(n int) {
		if len(rest) != n {
			ts.Fatalf(linkUsage)
		}
	}
	if verb == "start" {
		want(1)
		linkStart(ts, name, rest[0])
		return
	}
	p := linkGet(ts, name)
	switch verb {
	case "cut":
		want(0)
		p.Cut()
	case "blackhole":
		want(0)
		p.Blackhole()
	case "restore":
		want(0)
		p.Restore()
	case "unflap":
		want(0)
		p.StopFlap()
	case "stats":
		want(0)
		s := p.Stats()
		fmt.Fprintf(ts.Stdout(), "conns=%d cuts=%d up=%d down=%d\n", s.Conns, s.Cuts, s.BytesUp, s.BytesDown)
	case "delay":
		want(1)
		d, err := time.ParseDuration(rest[0])
		ts.Check(err)
		p.SetDelay(d)
	case "rate":
		want(1)
		r, err := parseRate(rest[0])
		ts.Check(err)
		p.SetRate(r)
	case "flap":
		want(4)
		var d [4]time.Duration
		for i, a := range rest {
			var err error
			d[i], err = time.ParseDuration(a)
			ts.Check(err)
		}
		h := fnv.New64a()
		_, _ = io.WriteString(h, name)
		seed := int64(h.Sum64())
		ts.Logf("link %s flaps with seed %d", name, seed)
		ts.Check(p.StartFlap(d[0], d[1], d[2], d[3], seed))
	default:
		ts.Fatalf(linkUsage)
	}
}

func linkStart(ts *testscript.TestScript, name, target string) {
	addr, err := linkTarget(target)
	ts.Check(err)
	key := linkKey(ts, name)
	links.Lock()
	p, ok := links.m[key]
	if !ok {
		p, err = linkproxy.Open("127.0.0.1:0", addr, linkproxy.Options{})
		if err == nil {
			links.m[key] = p
		}
	}
	links.Unlock()
	if ok {
		ts.Fatalf("link %s is already started", name)
	}
	ts.Check(err)
	ts.Defer(func() {
		links.Lock()
		delete(links.m, key)
		links.Unlock()
		_ = p.Close()
	})
	ts.Setenv(name, "http://"+p.Addr().String())
	ts.Setenv(name+"_ADDR", p.Addr().String())
}

func linkGet(ts *testscript.TestScript, name string) *linkproxy.Proxy {
	links.Lock()
	defer links.Unlock()
	p, ok := links.m[linkKey(ts, name)]
	if !ok {
		ts.Fatalf("no link %s: use link start %s TARGET first", name, name)
	}
	return p
}

func linkKey(ts *testscript.TestScript, name string) string {
	return ts.Getenv("WORK") + "\x00" + name
}

// linkTarget turns host:port or a URL into the host:port to dial.
func linkTarget(s string) (string, error) {
	if !strings.Contains(s, "://") {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return "", fmt.Errorf("link target %q: %w", s, err)
		}
		return s, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("link target: %w", err)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "ws": "80", "https": "443", "wss": "443"}[u.Scheme]
	}
	if u.Hostname() == "" || port == "" {
		return "", fmt.Errorf("link target %q: want host:port or a URL with a host", s)
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// parseRate reads bytes per second: a whole number with an optional unit,
// B, KB or MB (powers of 1000) or KiB or MiB (powers of 1024), in any case.
func parseRate(s string) (int64, error) {
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		i = len(s)
	}
	unit := map[string]int64{"": 1, "b": 1, "kb": 1000, "mb": 1000 * 1000, "kib": 1 << 10, "mib": 1 << 20}
	mult, ok := unit[strings.ToLower(s[i:])]
	n, err := strconv.ParseInt(s[:i], 10, 64)
	switch {
	case !ok:
		return 0, fmt.Errorf("rate %q: unknown unit %q (B, KB, MB, KiB, MiB)", s, s[i:])
	case err != nil:
		return 0, fmt.Errorf("rate %q: %w", s, err)
	case n > math.MaxInt64/mult:
		return 0, fmt.Errorf("rate %q: too large", s)
	}
	return n * mult, nil
}
