package check

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/certs"
	"github.com/outpost-edge/outpost/cmd/internal/huburl"
	"github.com/outpost-edge/outpost/store/identity/sas"
	"github.com/outpost-edge/outpost/sync/protocol"
)

// helloResult is the hub's answer to the check's Hello.
type helloResult struct {
	status  int           // HTTP status; 0: no answer
	err     error         // transport error or refusal
	message string        // the hub's error message
	took    time.Duration // round trip
	hubTime time.Time     // the hub's clock (Welcome.HubTime, else Date)
	sentAt  time.Time     // the local clock halfway through the request
	others  []string      // protocol.InstancesHeader
}

// checkHub sends one Hello signed with the edge's key: the hub is
// reachable, its certificate verifies, and it accepts the credentials
// (401 and 403 named as such). Without the key the running edge's link
// state stands in.
func (r *run) checkHub() {
	u := r.hubURL()
	switch {
	case u == "off":
		r.add("hub", OK, "standalone (--hub-url off): no hub to reach; $upstream messages stay queued", "")
		return
	case u == "" || r.cs == nil:
		r.linkFromStatus(u)
		return
	}
	if _, err := huburl.Check(u, r.cfg().InsecureLink); err != nil {
		// The edge would not send its token there; neither does the check.
		r.add("hub", Error, fmt.Sprintf("hub %s not asked: %v", u, err),
			"use https:// (the default for a remote hub; --hub-ca F for a CA of your own), or --insecure-link to accept the risk")
		return
	}
	h := r.hello(strings.TrimSpace(strings.Split(u, ",")[0]))
	r.welcome = &h
	switch {
	case h.status == 0:
		fix := "check --hub-url, DNS, the network and firewalls; the edge keeps queueing meanwhile"
		var ce *tls.CertificateVerificationError
		var ue x509.UnknownAuthorityError
		if errors.As(h.err, &ce) || errors.As(h.err, &ue) {
			fix = "the hub's certificate does not verify: give its CA with --hub-ca FILE"
		}
		r.add("hub", Error, fmt.Sprintf("hub %s unreachable: %v", u, h.err), fix)
	case h.status == http.StatusUnauthorized:
		r.add("hub", OK, fmt.Sprintf("hub %s reachable (%s)", u, h.took.Round(time.Millisecond)), "")
		r.add("credentials", Error, "hub refused this edge's credentials (401 unauthorized): "+h.message,
			"check the edge's connection string/key: copy it again from `outpost device show "+r.cs.DeviceID+"` (or create the device anew) and restart the edge")
	case h.status == http.StatusForbidden:
		r.add("hub", OK, fmt.Sprintf("hub %s reachable (%s)", u, h.took.Round(time.Millisecond)), "")
		r.add("credentials", Error, "hub refused this edge (403 forbidden): "+h.message,
			"the device "+r.cs.DeviceID+" must exist at the hub as an enabled edge device with SAS keys: outpost device create "+r.cs.DeviceID+" --edge")
	case h.status != http.StatusOK:
		r.add("hub", Error, fmt.Sprintf("hub %s answered %d: %s", u, h.status, h.message), "is --hub-url an outpost hub? see the hub's log")
	default:
		r.add("hub", OK, fmt.Sprintf("hub %s reachable (%s)", u, h.took.Round(time.Millisecond)), "")
		r.add("credentials", OK, "the hub accepts this edge's credentials ("+r.cs.DeviceID+")", "")
	}
}

// linkFromStatus reports the hub and the credentials from the running
// edge's link when the check has no key of its own.
func (r *run) linkFromStatus(u string) {
	st := r.status
	if st == nil || st.Uplink == nil {
		r.add("hub", Warn, "hub and credentials not checked: the edge is not running and the check has no connection string",
			"pass --config FILE, --connection-string-file F or env OUTPOST_EDGE_CONNECTION_STRING")
		return
	}
	up := st.Uplink
	switch up.State {
	case "online":
		r.add("hub", OK, "the edge's link is online since "+up.Since.UTC().Format(time.RFC3339), "")
		r.add("credentials", OK, "the hub accepts the running edge's credentials", "")
	case "unauthorized":
		r.add("credentials", Error, "hub refused this edge's credentials (401 unauthorized): "+up.LastError,
			"check the edge's connection string/key: copy it again from `outpost device show "+st.DeviceID+"` and restart the edge")
	case "forbidden":
		r.add("credentials", Error, "hub refused this edge (403 forbidden): "+up.LastError,
			"the device "+st.DeviceID+" must exist at the hub as an enabled edge device: outpost device create "+st.DeviceID+" --edge")
	default:
		r.add("hub", Error, fmt.Sprintf("the edge's link is %s since %s: %s", up.State, up.Since.UTC().Format(time.RFC3339), up.LastError),
			"check --hub-url, the network and the hub; the edge keeps queueing meanwhile")
	}
}

// hello posts a Hello signed with the edge's key. The instance is the
// running edge's (the hub tracks instances by their pulls, never by a
// Hello), else one named "check".
func (r *run) hello(base string) helloResult {
	instance := "edge:" + r.cs.DeviceID + ".check"
	if r.status != nil && r.status.Uplink != nil && r.status.Uplink.Instance != "" {
		instance = r.status.Uplink.Instance
	}
	body, enc, err := protocol.Encode(&protocol.Hello{Version: protocol.Version, Instance: instance})
	if err != nil {
		return helloResult{err: err}
	}
	ctx, cancel := context.WithTimeout(r.ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+protocol.PathHello, bytes.NewReader(body))
	if err != nil {
		return helloResult{err: err}
	}
	req.Header.Set("Content-Type", protocol.ContentType)
	if enc != "" {
		req.Header.Set("Content-Encoding", enc)
	}
	req.Header.Set("Authorization", sas.NewToken(r.cs.Resource(), r.cs.SharedAccessKey, "", r.opts.Now().Add(time.Hour)))
	client, err := r.client()
	if err != nil {
		return helloResult{err: err}
	}
	start := time.Now()
	resp, err := client.Do(req)
	res := helloResult{took: time.Since(start), sentAt: r.opts.Now().Add(-time.Since(start) / 2), err: err}
	if err != nil {
		return res
	}
	defer resp.Body.Close()
	readAnswer(resp, &res)
	return res
}

// readAnswer takes the status, the hub's clock, the other instances and
// the error message (or the Welcome) from the hub's answer.
func readAnswer(resp *http.Response, res *helloResult) {
	res.status = resp.StatusCode
	if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		res.hubTime = d
	}
	if o := resp.Header.Get(protocol.InstancesHeader); o != "" {
		res.others = strings.Split(o, ",")
	}
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		var e struct{ Message string }
		if json.Unmarshal(data, &e) == nil && e.Message != "" {
			res.message = e.Message
		} else {
			res.message = strings.TrimSpace(string(data))
		}
		return
	}
	var w protocol.Welcome
	if err := protocol.Decode(resp.Body, resp.Header.Get("Content-Encoding"), &w); err == nil && w.HubTime > 0 {
		res.hubTime = time.UnixMilli(w.HubTime)
	}
}

func (r *run) client() (*http.Client, error) {
	if r.opts.Client != nil {
		return r.opts.Client, nil
	}
	var roots *x509.CertPool
	if ca := r.cfg().HubCA; ca != "" {
		var err error
		if roots, err = certs.LoadCAs(ca, "--hub-ca"); err != nil {
			return nil, err
		}
	}
	return &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment,
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}, nil
}

// checkClock compares the local clock with the hub's (its answer's Date
// or hub time), and reports the running edge's own judgement.
func (r *run) checkClock() {
	if st := r.status; st != nil && !st.Clock.Plausible {
		r.add("clock", Warn, fmt.Sprintf("the edge finds its wall clock implausible and uses the %s time: %s", st.Clock.Source, st.Clock.Reason),
			"set the clock (NTP: timedatectl set-ntp true)")
	}
	h := r.welcome
	if h == nil || h.hubTime.IsZero() {
		switch st := r.status; {
		case st != nil && st.Clock.Plausible:
			r.add("clock", OK, "the edge finds its wall clock plausible (it uses the "+string(st.Clock.Source)+" time)", "")
		case st == nil:
			r.add("clock", Warn, "not compared with the hub's (no answer from it)", "")
		}
		return
	}
	skew := h.sentAt.Sub(h.hubTime)
	if skew < 0 {
		skew = -skew
	}
	// The Date header has one-second resolution.
	switch {
	case skew > sas.DefaultSkew:
		r.add("clock", Error, fmt.Sprintf("this machine's clock is %s off the hub's", skew.Round(time.Second)),
			"set the clock (NTP: timedatectl set-ntp true): leaf devices and modules sign their tokens with it, and the hub allows 5 minutes")
	case skew > 30*time.Second:
		r.add("clock", Warn, fmt.Sprintf("this machine's clock is %s off the hub's", skew.Round(time.Second)), "set the clock (NTP: timedatectl set-ntp true)")
	default:
		r.add("clock", OK, fmt.Sprintf("within %s of the hub's", max(skew.Round(time.Second), time.Second)), "")
	}
}
