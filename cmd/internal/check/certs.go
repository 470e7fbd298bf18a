package check

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/outpost-edge/outpost/cmd/internal/certs"
	"github.com/outpost-edge/outpost/cmd/internal/huburl"
	"github.com/outpost-edge/outpost/store/identity/sas"
)

// checkConfig: the connection string parses, the hub URL is allowed, the
// certificate flags come in pairs and name files that exist.
func (r *run) checkConfig() {
	c := r.cfg()
	var problems []string
	if r.opts.ConnectionString != "" {
		cs, err := sas.ParseConnString(r.opts.ConnectionString)
		switch {
		case err != nil:
			problems = append(problems, "connection string: "+err.Error())
		case cs.DeviceID == "" || cs.ModuleID != "" || len(cs.SharedAccessKey) == 0:
			problems = append(problems, "connection string: want the edge device's (HostName, DeviceId, SharedAccessKey)")
		default:
			r.cs = &cs
		}
	}
	if u := r.hubURL(); u != "" && u != "off" {
		if _, err := huburl.Check(u, c.InsecureLink); err != nil {
			problems = append(problems, "hub URL "+u+": "+err.Error())
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		problems = append(problems, "--tls-cert and --tls-key go together")
	}
	for _, f := range []struct{ flag, path string }{{"--tls-cert", c.TLSCert}, {"--tls-key", c.TLSKey}, {"--hub-ca", c.HubCA},
		{"--client-ca", c.ClientCA}, {"--deployment", c.Deployment}, {"--identities", c.Identities}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			problems = append(problems, f.flag+": "+err.Error())
		}
	}
	switch {
	case len(problems) > 0:
		r.add("config", Error, join(problems), "fix the edge's flags or --config file (outpost edge -h lists them)")
	case r.opts.ConnectionString == "" && r.ready == nil:
		r.add("config", Warn, "no connection string to check (the edge's key)", "pass --config FILE, --connection-string-file F or env OUTPOST_EDGE_CONNECTION_STRING")
	default:
		r.add("config", OK, "configuration valid", "")
	}
}

// hubURL is the hub the edge links to: --hub-url, the running edge's, or
// the connection string's HostName ("off": standalone; "": unknown).
func (r *run) hubURL() string {
	c := r.cfg()
	switch {
	case c.HubURL == "none":
		return "off"
	case c.HubURL != "":
		return c.HubURL
	case r.cs != nil:
		return huburl.Default(r.cs.HostName)
	}
	return ""
}

// checkCerts: the edge's server certificate (--tls-cert, else the local
// CA's in <data>/certs), its local CA, and the hub and client CAs.
func (r *run) checkCerts() {
	c := r.cfg()
	type file struct {
		what, path, fix string
		optional        bool // the local CA's files: made when a TLS listener first needs them
	}
	var files []file
	if c.TLSCert != "" {
		files = append(files, file{"server certificate (--tls-cert)", c.TLSCert, "renew it and restart the edge with the new --tls-cert/--tls-key", false})
	} else if r.opts.DataDir != "" {
		dir := filepath.Join(r.opts.DataDir, "certs")
		files = append(files, file{"local CA", filepath.Join(dir, certs.CAFile), "the edge signs it again at start when a third of its life is left: restart the edge", true},
			file{"server certificate", filepath.Join(dir, certs.ServerFile), "the edge renews it at start and while serving: restart the edge; see its log", true})
	}
	if c.HubCA != "" {
		files = append(files, file{"hub CA (--hub-ca)", c.HubCA, "get the hub's current CA certificate and point --hub-ca at it", false})
	}
	if c.ClientCA != "" {
		files = append(files, file{"client CA (--client-ca)", c.ClientCA, "renew the CA that signs the leaf devices' certificates", false})
	}
	checked := 0
	for _, f := range files {
		if r.checkCertFile(f.what, f.path, f.fix, f.optional) {
			checked++
		}
	}
	if c.TLSCert != "" && c.TLSKey != "" {
		if _, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
			r.add("certificates", Error, "--tls-cert and --tls-key do not make a pair: "+err.Error(), "give the key that belongs to the certificate")
		}
	}
	if checked == 0 {
		r.add("certificates", OK, "no certificate files yet (the edge makes its local CA in <data>/certs at its first TLS listener)", "")
	}
}

// checkCertFile adds a finding for the first certificate in path; false
// when an optional file does not exist (nothing to say).
func (r *run) checkCertFile(what, path, fix string, optional bool) bool {
	data, err := os.ReadFile(path)
	if optional && errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		r.add("certificates", Error, fmt.Sprintf("%s %s: %v", what, path, err), fix)
		return true
	}
	cert, err := firstCert(data)
	if err != nil {
		r.add("certificates", Error, fmt.Sprintf("%s %s: %v", what, path, err), fix)
		return true
	}
	now := r.opts.Now()
	left := cert.NotAfter.Sub(now)
	when := cert.NotAfter.UTC().Format(time.RFC3339)
	switch {
	case left <= 0:
		r.add("certificates", Error, fmt.Sprintf("%s %s expired on %s", what, path, when), fix)
	case now.Before(cert.NotBefore):
		r.add("certificates", Error, fmt.Sprintf("%s %s is not valid before %s (is the clock right?)", what, path, cert.NotBefore.UTC().Format(time.RFC3339)), fix)
	case left < r.opts.Expiring:
		r.add("certificates", Warn, fmt.Sprintf("%s %s expires in %s (%s)", what, path, days(left), when), fix)
	default:
		r.add("certificates", OK, fmt.Sprintf("%s %s valid until %s (%s left)", what, path, when, days(left)), "")
	}
	return true
}

func firstCert(data []byte) (*x509.Certificate, error) {
	for len(data) > 0 {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
	return nil, errors.New("no PEM certificate in it")
}

// days renders a duration as days (or hours under two days).
func days(d time.Duration) string {
	if d < 48*time.Hour {
		return fmt.Sprintf("%.0f hours", d.Hours())
	}
	return fmt.Sprintf("%.0f days", d.Hours()/24)
}
