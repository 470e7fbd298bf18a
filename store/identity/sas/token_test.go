package sas

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

var se1700 = time.Unix(1700000000, 0)

// TestAzureVectors checks NewToken against tokens made by the Azure Python
// SDK algorithm (quote_plus, HMAC-SHA256 over "<encoded sr>\n<se>"), computed
// outside Go with python3 and pasted here.
func TestAzureVectors(t *testing.T) {
	key := testKey(t)
	tests := []struct{ resource, policy, want string }{
		{"myhub.azure-devices.net/devices/sensor1", "",
			"SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fsensor1&sig=Mi5GX%2FMi%2FBbKxtLNByyzcxSjNFKqZj5Yw8IGc91a8d8%3D&se=1700000000"},
		{"myhub.azure-devices.net/devices/gw1/modules/$edgeHub", "",
			"SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fgw1%2Fmodules%2F%24edgeHub&sig=GuJ6uDJvVt1PDr3cCNmozfv0%2FZ7OP9QDpg7RIeM5yDo%3D&se=1700000000"},
		{"127.0.0.1:8080", "owner",
			"SharedAccessSignature sr=127.0.0.1%3A8080&sig=Zau7Z%2FuvXM15WqRlj%2F8AmW%2BUoOhiO72yhZXsd46h8W8%3D&se=1700000000&skn=owner"},
	}
	for _, tt := range tests {
		if got := NewToken(tt.resource, key, tt.policy, se1700); got != tt.want {
			t.Errorf("NewToken(%q) =\n %s\nwant\n %s", tt.resource, got, tt.want)
		}
		tok, err := ParseToken(tt.want)
		if err != nil {
			t.Fatalf("ParseToken(%q): %v", tt.want, err)
		}
		if tok.Resource != tt.resource || tok.KeyName != tt.policy || !tok.Expiry.Equal(se1700) {
			t.Errorf("ParseToken(%q) = %+v", tt.want, tok)
		}
		if err := Verify(tok, tt.resource, [][]byte{key}, se1700, 0); err != nil {
			t.Errorf("Verify(%q): %v", tt.want, err)
		}
	}
}

// TestHandComputed signs by hand with crypto/hmac the way the C# SDK and
// edgeHub do, including escapes in lower case (HttpUtility.UrlEncode): the
// signature covers sr exactly as sent, so it must still verify.
func TestHandComputed(t *testing.T) {
	key := testKey(t)
	for _, sr := range []string{
		"myhub.azure-devices.net%2Fdevices%2Fsensor1",
		"myhub.azure-devices.net%2fdevices%2fsensor1",
		"MyHub.Azure-Devices.NET%2Fdevices%2Fsensor1",
	} {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(sr + "\n" + "1700000000"))
		sig := base64.StdEncoding.EncodeToString(m.Sum(nil))
		s := "SharedAccessSignature se=1700000000&sig=" + url.QueryEscape(sig) + "&sr=" + sr // field order is free
		tok, err := ParseToken(s)
		if err != nil {
			t.Fatalf("ParseToken(%q): %v", s, err)
		}
		if tok.RawResource != sr {
			t.Errorf("RawResource = %q, want %q", tok.RawResource, sr)
		}
		if err := Verify(tok, "myhub.azure-devices.net/devices/sensor1", [][]byte{key}, se1700, 0); err != nil {
			t.Errorf("Verify(%q): %v", s, err)
		}
	}
	// "4vizoZvWQUxDRl+tiw6wRUBGZqS//bMqiQwhhXLd9JA=" is python's signature for
	// the lower-case escape form: a '+' left unescaped in sig is accepted.
	s := "SharedAccessSignature sr=myhub.azure-devices.net%2fdevices%2fsensor1&sig=4vizoZvWQUxDRl+tiw6wRUBGZqS//bMqiQwhhXLd9JA=&se=1700000000"
	tok, err := ParseToken(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(tok, "myhub.azure-devices.net/devices/sensor1", [][]byte{key}, se1700, 0); err != nil {
		t.Errorf("Verify(python lower-case vector): %v", err)
	}
}

func TestParseTokenErrors(t *testing.T) {
	good := NewToken("h/devices/d", testKey(t), "", se1700)
	_, sig, _ := strings.Cut(good, "&sig=")
	sig, _, _ = strings.Cut(sig, "&")
	tests := []struct{ in, want string }{
		{"", "does not start"},
		{"sharedaccesssignature sr=h&sig=" + sig + "&se=1", "does not start"},
		{"SharedAccessSignature sr=h&sig=" + sig, "needs the fields"},
		{"SharedAccessSignature sr=h&sig=" + sig + "&se=1&foo=bar", `unknown field "foo"`},
		{"SharedAccessSignature sr=h&sr=h&sig=" + sig + "&se=1", "sr appears twice"},
		{"SharedAccessSignature sr=&sig=" + sig + "&se=1", "sr is empty"},
		{"SharedAccessSignature sr=h&sig=" + sig + "&se=1&skn=", "skn is empty"},
		{"SharedAccessSignature sr=h%zz&sig=" + sig + "&se=1", "sr is not URL-encoded"},
		{"SharedAccessSignature sr=h x&sig=" + sig + "&se=1", "sr has a space"},
		{"SharedAccessSignature sr=h&sig=AAAA&se=1", "sig is not a base64 HMAC-SHA256"},
		{"SharedAccessSignature sr=h&sig=%%%&se=1", "sig is not URL-encoded"},
		{"SharedAccessSignature sr=h&sig=" + sig + "&se=-1", "se is not a number"},
		{"SharedAccessSignature sr=h&sig=" + sig + "&se=1.5", "se is not a number"},
		{"SharedAccessSignature sr=h&sig=" + sig + "&se=01", "se is not a number"},
		{"SharedAccessSignature sr=h&sig=" + sig + "&se=9999999999999", "se is not a number"},
		{"SharedAccessSignature sr=h&sig=" + sig + "&se=999999999999", "after the year 9999"},
		{"SharedAccessSignature sr=" + strings.Repeat("h", maxTokenLen) + "&sig=" + sig + "&se=1", "longer than"},
	}
	for _, tt := range tests {
		_, err := ParseToken(tt.in)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseToken(%.80q) = %v, want ErrMalformed saying %q", tt.in, err, tt.want)
		}
	}
}

func TestTokenRoundTrip(t *testing.T) {
	s := NewToken("h:1/devices/d/modules/m", testKey(t), "pol icy", se1700)
	tok, err := ParseToken(s)
	if err != nil {
		t.Fatal(err)
	}
	if tok.String() != s {
		t.Errorf("String() = %q, want %q", tok.String(), s)
	}
	again, err := ParseToken(tok.String())
	if err != nil || !reflect.DeepEqual(again, tok) {
		t.Errorf("round trip: %+v, %v; want %+v", again, err, tok)
	}
}

func TestVerify(t *testing.T) {
	primary, secondary, other := testKey(t), GenerateKey(), GenerateKey()
	keys := [][]byte{primary, secondary}
	exp := se1700
	mk := func(resource string, key []byte) Token {
		tok, err := ParseToken(NewToken(resource, key, "", exp))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	csharp := func(host, dev string) Token { // C# SDK: id URL-encoded inside the resource, then the whole resource again
		tok, err := ParseToken(NewToken(host+"/devices/"+url.QueryEscape(dev), primary, "", exp))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	const res = "hub.example/devices/sensor1"
	tests := []struct {
		name string
		tok  Token
		want string
		keys [][]byte
		now  time.Time
		skew time.Duration
		err  error
	}{
		{"primary", mk(res, primary), res, keys, exp, 0, nil},
		{"secondary", mk(res, secondary), res, keys, exp, 0, nil},
		{"secondary only", mk(res, secondary), res, [][]byte{nil, secondary}, exp, 0, nil},
		{"other key", mk(res, other), res, keys, exp, 0, ErrBadSignature},
		{"no keys", mk(res, primary), res, nil, exp, 0, ErrBadSignature},
		{"host case", mk("HUB.Example/devices/sensor1", primary), res, keys, exp, 0, nil},
		{"id case (IoT Hub compares resources ignoring case)", mk("hub.example/devices/Sensor1", primary), res, keys, exp, 0, nil},
		{"other device", mk("hub.example/devices/sensor2", primary), res, keys, exp, 0, ErrWrongResource},
		{"module token for device", mk(res+"/modules/m", primary), res, keys, exp, 0, ErrWrongResource},
		{"other host", mk("evil.example/devices/sensor1", primary), res, keys, exp, 0, ErrWrongResource},
		{"no host", mk("devices/sensor1", primary), res, keys, exp, 0, ErrWrongResource},
		{"c# encoded id", csharp("hub.example", "a#b"), "hub.example/devices/a#b", keys, exp, 0, nil},
		{"c# encoded plain id", csharp("hub.example", "sensor1"), res, keys, exp, 0, nil},
		{"default skew edge", mk(res, primary), res, keys, exp.Add(DefaultSkew), 0, nil},
		{"default skew past", mk(res, primary), res, keys, exp.Add(DefaultSkew + time.Second), 0, ErrExpired},
		{"default skew past ns", mk(res, primary), res, keys, exp.Add(DefaultSkew + time.Nanosecond), 0, ErrExpired},
		{"explicit skew edge", mk(res, primary), res, keys, exp.Add(time.Minute), time.Minute, nil},
		{"explicit skew past", mk(res, primary), res, keys, exp.Add(time.Minute + time.Second), time.Minute, ErrExpired},
		{"no skew at expiry", mk(res, primary), res, keys, exp, -1, nil},
		{"no skew past", mk(res, primary), res, keys, exp.Add(time.Second), -1, ErrExpired},
		{"long ago issued", mk(res, primary), res, keys, exp.Add(-24 * time.Hour), 0, nil},
		{"bad signature beats expired", mk(res, other), res, keys, exp.Add(time.Hour), 0, ErrBadSignature},
	}
	for _, tt := range tests {
		err := Verify(tt.tok, tt.want, tt.keys, tt.now, tt.skew)
		if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
			t.Errorf("%s: Verify = %v, want %v", tt.name, err, tt.err)
		}
		if err != nil {
			msg := err.Error()
			sig := base64.StdEncoding.EncodeToString(tt.tok.Signature)
			if strings.Contains(msg, sig) || strings.Contains(msg, url.QueryEscape(sig)) || strings.Contains(msg, testKeyB64) {
				t.Errorf("%s: error %q contains a secret", tt.name, msg)
			}
		}
	}
}

func TestVerifyTamper(t *testing.T) {
	key := testKey(t)
	s := NewToken("h/devices/d", key, "", se1700)
	tok, _ := ParseToken(s)
	later := tok
	later.Expiry = tok.Expiry.Add(time.Hour) // a client extending its own token
	if err := Verify(later, "h/devices/d", [][]byte{key}, se1700, 0); !errors.Is(err, ErrBadSignature) {
		t.Errorf("extended expiry: %v", err)
	}
	flipped := tok
	flipped.Signature = append([]byte(nil), tok.Signature...)
	flipped.Signature[0] ^= 1
	if err := Verify(flipped, "h/devices/d", [][]byte{key}, se1700, 0); !errors.Is(err, ErrBadSignature) {
		t.Errorf("flipped bit: %v", err)
	}
}

func TestExpiredMessage(t *testing.T) {
	key := testKey(t)
	tok, _ := ParseToken(NewToken("h/devices/d", key, "", se1700))
	err := Verify(tok, "h/devices/d", [][]byte{key}, se1700.Add(time.Hour), 0)
	for _, want := range []string{"SAS token expired at 2023-11-14T22:13:20Z", "5m0s clock skew", "outpost token"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("expired error %v does not say %q", err, want)
		}
	}
}
