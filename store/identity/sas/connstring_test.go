package sas

import (
	"bytes"
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"
)

const testKeyB64 = "IKbDlm5v1k8DsZL4wej2gcc0hU52qiP6Rg3QPtUV9EY="

func testKey(t testing.TB) []byte {
	t.Helper()
	k, err := base64.StdEncoding.DecodeString(testKeyB64)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestParseConnString(t *testing.T) {
	key := testKey(t)
	tests := []struct {
		in   string
		want ConnString
		res  string
	}{
		{"HostName=hub.example:8080;DeviceId=sensor1;SharedAccessKey=" + testKeyB64,
			ConnString{HostName: "hub.example:8080", DeviceID: "sensor1", SharedAccessKey: key},
			"hub.example:8080/devices/sensor1"},
		{"HostName=h;DeviceId=gw1;ModuleId=$edgeHub;SharedAccessKey=" + testKeyB64 + ";GatewayHostName=gw1.local",
			ConnString{HostName: "h", DeviceID: "gw1", ModuleID: "$edgeHub", SharedAccessKey: key, GatewayHostName: "gw1.local"},
			"h/devices/gw1/modules/$edgeHub"},
		{"HostName=127.0.0.1:8080;SharedAccessKeyName=owner;SharedAccessKey=" + testKeyB64,
			ConnString{HostName: "127.0.0.1:8080", SharedAccessKeyName: "owner", SharedAccessKey: key},
			"127.0.0.1:8080"},
		{"SharedAccessKey=" + testKeyB64 + ";DeviceId=d;HostName=h;", // order free, trailing ';'
			ConnString{HostName: "h", DeviceID: "d", SharedAccessKey: key}, "h/devices/d"},
		{"  HostName=h;DeviceId=d;x509=true\n",
			ConnString{HostName: "h", DeviceID: "d", X509: true}, "h/devices/d"},
		{"HostName=h;DeviceId=d;x509=False;SharedAccessKey=" + strings.TrimRight(testKeyB64, "="), // unpadded key
			ConnString{HostName: "h", DeviceID: "d", SharedAccessKey: key}, "h/devices/d"},
		{"HostName=[::1]:8883;DeviceId=a-b.c%e_f*h?i!j(k)l,m:n=o@p$q'r;SharedAccessKey=AA==",
			ConnString{HostName: "[::1]:8883", DeviceID: "a-b.c%e_f*h?i!j(k)l,m:n=o@p$q'r", SharedAccessKey: []byte{0}},
			"[::1]:8883/devices/a-b.c%e_f*h?i!j(k)l,m:n=o@p$q'r"},
	}
	for _, tt := range tests {
		got, err := ParseConnString(tt.in)
		if err != nil {
			t.Errorf("ParseConnString(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseConnString(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		if r := got.Resource(); r != tt.res {
			t.Errorf("Resource() = %q, want %q", r, tt.res)
		}
		again, err := ParseConnString(got.String())
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("round trip of %q: %+v, %v", got.String(), again, err)
		}
	}
}

func TestParseConnStringErrors(t *testing.T) {
	const secret = "c2VjcmV0LWtleS12YWx1ZQ=="
	tests := []struct{ in, want string }{
		{"", "empty"},
		{"HostName=h;DeviceId=d;" + secret, "a part has an unknown key"},
		{"HostName=h;DeviceId=d;" + strings.TrimRight(secret, "="), "part 3 has no '='"},
		{"HostName=h;DeviceId=d;DeviceId=e;SharedAccessKey=" + secret, "DeviceId appears twice"},
		{"HostName=h;DeviceId=d;SharedAccessKey=", "SharedAccessKey is empty"},
		{"HostName=h;DeviceId=d;Foo=bar;SharedAccessKey=" + secret, `unknown key "Foo"`},
		{"hostname=h;DeviceId=d;SharedAccessKey=" + secret, `did you mean HostName?`},
		{"HostName=h;DeviceId=d;SharedAccessKey=not*base64!" + secret, "SharedAccessKey is not valid base64"},
		{"DeviceId=d;SharedAccessKey=" + secret, "HostName is missing"},
		{"HostName=h;SharedAccessKey=" + secret, "needs DeviceId"},
		{"HostName=h;DeviceId=d;SharedAccessKeyName=owner;SharedAccessKey=" + secret, "both DeviceId and SharedAccessKeyName"},
		{"HostName=h;ModuleId=m;SharedAccessKeyName=owner;SharedAccessKey=" + secret, "ModuleId needs a DeviceId"},
		{"HostName=h;DeviceId=d", "SharedAccessKey is missing"},
		{"HostName=h;DeviceId=d;x509=true;SharedAccessKey=" + secret, "both x509=true and SharedAccessKey"},
		{"HostName=h;DeviceId=d;x509=yes", "x509 is"},
		{"HostName=h;DeviceId=a/b;SharedAccessKey=" + secret, "DeviceId"},
		{"HostName=h;DeviceId=d;ModuleId=m m;SharedAccessKey=" + secret, "ModuleId"},
		{"HostName=h;DeviceId=" + strings.Repeat("x", 129) + ";SharedAccessKey=" + secret, "longer than 128"},
		{"HostName=h/x;DeviceId=d;SharedAccessKey=" + secret, "HostName"},
		{"HostName=h;DeviceId=d;GatewayHostName=g w;SharedAccessKey=" + secret, "GatewayHostName"},
		{"HostName=h;SharedAccessKeyName=owner;x509=true", "takes no x509"},
		{"HostName=h;DeviceId=d;SharedAccessSignature=SharedAccessSignature sr=x", "not supported"},
	}
	for _, tt := range tests {
		_, err := ParseConnString(tt.in)
		if err == nil {
			t.Errorf("ParseConnString(%q): no error, want %q", tt.in, tt.want)
			continue
		}
		if !errors.Is(err, ErrConnString) {
			t.Errorf("ParseConnString(%q): %v does not wrap ErrConnString", tt.in, err)
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseConnString(%q) = %q, want it to say %q", tt.in, err, tt.want)
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "c2VjcmV0") {
			t.Errorf("ParseConnString(%q) error echoes the key: %q", tt.in, err)
		}
	}
}

func TestConnStringRedacted(t *testing.T) {
	cs, err := ParseConnString("HostName=h;DeviceId=d;SharedAccessKey=" + testKeyB64)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{cs.Redacted(), cs.LogValue().String()} {
		if strings.Contains(s, testKeyB64) || !strings.Contains(s, "SharedAccessKey=<redacted>") {
			t.Errorf("redacted form %q", s)
		}
	}
	if !strings.Contains(cs.String(), testKeyB64) {
		t.Errorf("String() = %q lost the key", cs.String())
	}
}

func TestCheckID(t *testing.T) {
	for _, id := range []string{"d", "$edgeAgent", "A-Z.0-9%_*?!(),:=@$'", strings.Repeat("x", 128)} {
		if err := CheckID("id", id); err != nil {
			t.Errorf("CheckID(%q): %v", id, err)
		}
	}
	for _, id := range []string{"", "a/b", "a b", "a;b", "a\x00", "é", strings.Repeat("x", 129), "+", "#", "a+b", "a#b"} {
		if err := CheckID("id", id); err == nil {
			t.Errorf("CheckID(%q): no error", id)
		}
	}
	// The deviation from IoT Hub is said in the error.
	if err := CheckID("device id", "a+b"); err == nil || !strings.Contains(err.Error(), "MQTT wildcards") || !strings.Contains(err.Error(), "ASCII letters") {
		t.Errorf("CheckID(a+b) = %v, want the wildcard explained and the allowed set named", err)
	}
}

func TestGenerateKey(t *testing.T) {
	a, b := GenerateKey(), GenerateKey()
	if len(a) != 32 || len(b) != 32 || bytes.Equal(a, b) {
		t.Errorf("GenerateKey: %x, %x", a, b)
	}
}
