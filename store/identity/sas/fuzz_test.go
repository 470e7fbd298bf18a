package sas

import (
	"reflect"
	"testing"
	"time"
)

func FuzzParseConnString(f *testing.F) {
	for _, s := range []string{
		"HostName=h;DeviceId=d;SharedAccessKey=" + testKeyB64,
		"HostName=h:1;DeviceId=d;ModuleId=$edgeHub;SharedAccessKey=AA==;GatewayHostName=g",
		"HostName=h;SharedAccessKeyName=owner;SharedAccessKey=AAAA",
		"HostName=h;DeviceId=d;x509=TRUE;;",
		"HostName=h;DeviceId=d;SharedAccessKey=AB",
		"=;=;",
		"HostName==;DeviceId==",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cs, err := ParseConnString(s)
		if err != nil {
			return
		}
		again, err := ParseConnString(cs.String())
		if err != nil {
			t.Fatalf("String() %q of a parsed connection string does not parse: %v", cs.String(), err)
		}
		if !reflect.DeepEqual(again, cs) {
			t.Fatalf("round trip: %+v != %+v", again, cs)
		}
		if again.String() != cs.String() {
			t.Fatalf("String not stable: %q != %q", again.String(), cs.String())
		}
		_ = cs.Resource()
	})
}

func FuzzParseToken(f *testing.F) {
	key := []byte("k")
	for _, s := range []string{
		NewToken("h/devices/d", key, "", time.Unix(1700000000, 0)),
		NewToken("h:8080", key, "owner", time.Unix(0, 0)),
		NewToken("h/devices/a%23b/modules/m", key, "", time.Unix(253402300799, 0)),
		"SharedAccessSignature sr=a&sig=b&se=1",
		"SharedAccessSignature sig=AAAA&&se=1",
		"SharedAccessSignature sr=h&sig=4vizoZvWQUxDRl+tiw6wRUBGZqS//bMqiQwhhXLd9JA=&se=0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			return
		}
		again, err := ParseToken(tok.String())
		if err != nil {
			t.Fatalf("String() %q of a parsed token does not parse: %v", tok.String(), err)
		}
		if !reflect.DeepEqual(again, tok) {
			t.Fatalf("round trip: %+v != %+v", again, tok)
		}
		// Verification of anything that parses must not panic either.
		_ = Verify(tok, tok.Resource, [][]byte{key}, time.Unix(1700000000, 0), 0)
	})
}
