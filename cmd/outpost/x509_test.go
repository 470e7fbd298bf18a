package main

import (
	"strings"
	"testing"
)

// TestDeviceCreateX509: device create --auth x509-ca|x509-thumbprint, as
// az's --am, creates the identities the REST API would, on a real hub.
func TestDeviceCreateX509(t *testing.T) {
	ih := newImageHub(t, 0)
	tp := strings.Repeat("ab", 32)
	tp2 := strings.Repeat("CD:", 19) + "CD"
	out, _ := ih.mustRun(t, "device", "create", "cam1", "--auth", "x509-thumbprint", "--thumbprint", tp, "--secondary-thumbprint", tp2)
	if !strings.Contains(out, `"type": "selfSigned"`) || !strings.Contains(out, `"connectionString": "HostName=hub.test:8080;DeviceId=cam1;x509=true"`) {
		t.Errorf("create --auth x509-thumbprint printed\n%s", out)
	}
	out, _ = ih.mustRun(t, "device", "show", "cam1")
	if !strings.Contains(out, `"primaryThumbprint": "`+tp+`"`) || !strings.Contains(out, `"secondaryThumbprint": "`+tp2+`"`) || strings.Contains(out, "symmetricKey") {
		t.Errorf("the hub holds\n%s", out)
	}
	ih.mustRun(t, "device", "create", "cam2", "--auth", "x509-ca")
	out, _ = ih.mustRun(t, "device", "show", "cam2")
	if !strings.Contains(out, `"type": "certificateAuthority"`) || strings.Contains(out, "symmetricKey") {
		t.Errorf("create --auth x509-ca: the hub holds\n%s", out)
	}
	if out, _ := ih.mustRun(t, "device", "connection-string", "cam2"); out != "HostName=hub.test:8080;DeviceId=cam2;x509=true\n" {
		t.Errorf("connection-string %q", out)
	}
	out, _ = ih.mustRun(t, "device", "list", "-o", "table")
	if !strings.Contains(out, "certificateAuthority") || !strings.Contains(out, "selfSigned") {
		t.Errorf("list:\n%s", out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--auth", "x509-thumbprint"}, "needs --thumbprint"},
		{[]string{"--auth", "x509-thumbprint", "--thumbprint", "abc"}, "want the hex SHA-1 (40 digits) or SHA-256"},
		{[]string{"--thumbprint", tp}, "need --auth x509-thumbprint"},
		{[]string{"--auth", "x509-ca", "--primary-key", "MDEyMzQ1Njc4OWFiY2RlZg=="}, "are for --auth sas"},
		{[]string{"--auth", "x509"}, `--auth "x509": want sas, x509-ca or x509-thumbprint`},
	} {
		args := append([]string{"device", "create", "cam3"}, c.args...)
		if code, _, errs := ih.run(args...); code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("outpost %s: exit %d, %q; want 2 and %q", strings.Join(args, " "), code, errs, c.want)
		}
	}
	if code, _, errs := ih.run("device", "update", "cam1", "--auth", "sas"); code != 2 || !strings.Contains(errs, "--auth does not apply to device update") {
		t.Errorf("update --auth: exit %d, %q", code, errs)
	}
}
